"""The Ray Serve application: FastAPI ingress for the REST API (see serve.app and serve.deploy)."""

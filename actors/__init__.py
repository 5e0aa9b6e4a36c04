"""Ray actors: thin @ray.remote shells around plain classes (partition owners, dispatchers)."""

"""Pure data logic on Arrow and Polars: the event envelope, codecs, window operators. No I/O."""

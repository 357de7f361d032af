"""A package whose import fails here: resolving ``pkg.api:handler`` must not import it."""

raise RuntimeError("the runner imported the package while checking the reference")

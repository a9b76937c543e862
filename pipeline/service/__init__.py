"""`imgvec serve`: the search API under /api/ and the gallery page at /, over the same database,
spaces and search code as `imgvec search`.

Modules: `app` (the FastAPI app and its lifespan), `config` (what the command line chose),
`state` (the pool and the backends, one per space), `problems` (errors as problem+json),
`security` (the token), `results` (a result's JSON shape), and one router per concern:
`search_api`, `images_api`, `catalog_api` (spaces, health, diverse, embeddings), `runs_api`.
Only the command line imports this package (tests/test_architecture.py): nothing else needs
FastAPI installed.
"""

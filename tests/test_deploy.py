"""deploy/: the recipes that run `imgvec run SOURCE` as N tasks of a batch engine, checked without
the engines. Every YAML parses and has what its engine needs; the engine's variables give each
task the shard and run id that imgvec itself reads from them (pipeline.core.shards); secrets come
by reference only. The Slurm script passes `bash -n` and, with stand-ins for srun and imgvec, runs
the same command in every task and reruns a task that exits 75. The gcloud commands of
deploy/README.md say what the job YAML says, and the CUDA Dockerfile is the CPU one but for the
torch index."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.core.shards import Shard, run_id_from_environment, shard_from_environment

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SLURM_SCRIPT = DEPLOY / "slurm" / "imgvec-array.sbatch"
SECRET_NAMES = ("DATABASE_URL", "PGPASSWORD")
JOB_NAME_FIELD = "metadata.labels['batch.kubernetes.io/job-name']"


def load(relative: str) -> dict:
    return yaml.safe_load((DEPLOY / relative).read_text(encoding="utf-8"))


def the_container(pod_spec: dict) -> dict:
    [container] = pod_spec["containers"]
    assert container["image"] and container["args"][0] == "run", container
    # The same command in every task: the shard comes from the engine, never from the recipe.
    assert not any(arg.startswith("--shard") for arg in container["args"])
    # Quantities are strings in both APIs' JSON (Kubernetes' own client refuses a number).
    assert all(type(q) is str for part in container["resources"].values() for q in part.values())
    return container


def literal_env(container: dict) -> dict[str, str]:
    """The variables the recipe sets to a value; checks that the secrets come by reference."""
    env = {}
    for variable in container["env"]:
        if variable["name"] in SECRET_NAMES:
            assert "value" not in variable, f"{variable['name']} written into the recipe"
            reference = variable["valueFrom"]["secretKeyRef"]
            assert reference["name"] and reference["key"]
        elif "value" in variable:
            env[variable["name"]] = str(variable["value"])
    assert {v["name"] for v in container["env"]} >= set(SECRET_NAMES)
    return env


def wants_gpu(relative: str, container: dict, gpus: object) -> None:
    if "gpu" in relative:
        assert str(gpus) == "1" and container["image"].endswith(":cuda")
        assert " --device cuda" in " ".join(container["args"])
    else:
        assert gpus is None and container["image"].endswith(":cpu")
        assert "cuda" not in " ".join(container["args"])


CLOUD_RUN_JOBS = ["cloud-run/job.yaml", "cloud-run/job-gpu.yaml"]


@pytest.mark.parametrize("relative", CLOUD_RUN_JOBS)
def test_cloud_run_job(relative):
    job = load(relative)
    assert job["apiVersion"] == "run.googleapis.com/v1" and job["kind"] == "Job"
    assert job["metadata"]["name"] and job["metadata"]["labels"]["cloud.googleapis.com/location"]
    execution = job["spec"]["template"]["spec"]
    tasks = execution["taskCount"]
    assert isinstance(tasks, int) and 1 <= execution["parallelism"] <= tasks
    task = execution["template"]["spec"]
    assert isinstance(task["maxRetries"], int) and 1 <= task["maxRetries"] <= 10
    assert isinstance(task["timeoutSeconds"], str)  # an int64: a string in the v1 API's JSON
    timeout = int(task["timeoutSeconds"])
    assert 600 <= timeout <= (3600 if "gpu" in relative else 7 * 24 * 3600)
    container = the_container(task)
    env = literal_env(container)
    assert env["IMGVEC_WORK_DIR"].startswith("gs://")  # shared by every task, unlike the disk
    limits = container["resources"]["limits"]
    wants_gpu(relative, container, limits.get("nvidia.com/gpu"))
    if "gpu" in relative:
        assert task["nodeSelector"]["run.googleapis.com/accelerator"] == "nvidia-l4"
        annotations = job["spec"]["template"]["metadata"]["annotations"]
        assert annotations["run.googleapis.com/gpu-zonal-redundancy-disabled"] == "true"
        assert int(limits["cpu"]) >= 4 and limits["memory"] == "16Gi"  # a GPU's minimum
    # What each task then reads from the variables Cloud Run sets.
    engine = {"CLOUD_RUN_TASK_INDEX": str(tasks - 1), "CLOUD_RUN_TASK_COUNT": str(tasks)}
    assert shard_from_environment(env | engine) == Shard(tasks - 1, tasks)
    assert run_id_from_environment(env | {"CLOUD_RUN_EXECUTION": "imgvec-x7k2p"}) == "imgvec-x7k2p"


KUBERNETES_JOBS = ["kubernetes/indexed-job.yaml", "kubernetes/indexed-job-gpu.yaml"]


@pytest.mark.parametrize("relative", KUBERNETES_JOBS)
def test_kubernetes_indexed_job(relative):
    job = load(relative)
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert "name" not in job["metadata"] and job["metadata"]["generateName"]  # a new run id each
    spec = job["spec"]
    completions = spec["completions"]
    assert spec["completionMode"] == "Indexed"
    assert isinstance(completions, int) and 1 <= spec["parallelism"] <= completions
    assert isinstance(spec["backoffLimitPerIndex"], int) and spec["backoffLimitPerIndex"] >= 1
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # what podFailurePolicy requires
    container = the_container(pod)
    # Exit codes that a retry cannot mend fail their index; 75 (retryable) never does.
    final = [
        rule["onExitCodes"]
        for rule in spec["podFailurePolicy"]["rules"]
        if rule["action"] in ("FailIndex", "FailJob") and "onExitCodes" in rule
    ]
    assert all(codes["containerName"] == container["name"] for codes in final)
    assert {1, 2} <= {code for codes in final for code in codes["values"]}
    assert not {75, 143} & {code for codes in final for code in codes["values"]}
    env = literal_env(container)
    assert env["IMGVEC_SHARDS"] == str(completions)
    [run_id] = [v for v in container["env"] if v["name"] == "IMGVEC_RUN_ID"]
    assert run_id["valueFrom"]["fieldRef"]["fieldPath"] == JOB_NAME_FIELD
    # The image's work dir is /work: there every pod must see the same shared volume.
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == "/work"]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["claimName"]
    wants_gpu(relative, container, container["resources"]["limits"].get("nvidia.com/gpu"))
    # What each pod then reads: its index from Kubernetes, the count from IMGVEC_SHARDS.
    engine = {"JOB_COMPLETION_INDEX": str(completions - 1), "IMGVEC_RUN_ID": "imgvec-nightly"}
    assert shard_from_environment(env | engine) == Shard(completions - 1, completions)
    assert run_id_from_environment(env | engine) == "imgvec-nightly"
    with pytest.raises(ValueError, match="IMGVEC_SHARDS"):
        shard_from_environment({"JOB_COMPLETION_INDEX": "0"})


def test_slurm_script_is_valid_bash_for_an_array_of_8():
    subprocess.run(["bash", "-n", str(SLURM_SCRIPT)], check=True)
    text = SLURM_SCRIPT.read_text(encoding="utf-8")
    assert "\n#SBATCH --array=0-7\n" in text and "srun " in text
    assert os.access(SLURM_SCRIPT, os.X_OK)


# Stand-ins: srun runs its command once (after its own options); imgvec notes the shard and run id
# that pipeline.core.shards reads from Slurm's variables, and exits with the next code of a list.
FAKE_SRUN = '#!/bin/bash\nwhile [[ "$1" == -* ]]; do shift; done\nexec "$@"\n'
FAKE_IMGVEC = f"""#!{sys.executable}
import os, sys
sys.path.insert(0, {str(ROOT)!r})
from pipeline.core.shards import run_id_from_environment, shard_from_environment
codes = os.environ["FAKE_EXIT_CODES"].split()
log = os.environ["FAKE_LOG"]
calls = open(log).read().count("\\n") if os.path.exists(log) else 0
with open(log, "a") as out:
    shard = shard_from_environment(os.environ)
    run_id = run_id_from_environment(os.environ)
    out.write(f"{{shard}} {{run_id}} {{os.environ['PGPASSWORD']}} {{' '.join(sys.argv[1:])}}\\n")
sys.exit(int(codes[min(calls, len(codes) - 1)]))
"""


def run_slurm_task(tmp_path: Path, task: int, codes: str, **extra: str):
    fakes = tmp_path / "bin"
    fakes.mkdir(parents=True, exist_ok=True)
    for name, text in (("srun", FAKE_SRUN), ("imgvec", FAKE_IMGVEC)):
        (fakes / name).write_text(text)
        (fakes / name).chmod(stat.S_IRWXU)
    secrets = tmp_path / "db.env"
    secrets.write_text("DATABASE_URL=postgresql://imgvec@db:5432/imgvec\nPGPASSWORD='p w#$'\n")
    log = tmp_path / f"task-{task}.log"
    env = {
        "PATH": f"{fakes}:{os.environ['PATH']}",
        "IMGVEC_SECRETS": str(secrets),
        "IMGVEC_WORK_DIR": str(tmp_path / "work"),
        "IMGVEC_RETRY_PAUSE": "0",
        "SLURM_ARRAY_JOB_ID": "4242",
        "SLURM_ARRAY_TASK_ID": str(task),
        "SLURM_ARRAY_TASK_MIN": "0",
        "SLURM_ARRAY_TASK_COUNT": "8",
        "SLURM_CPUS_PER_TASK": "8",
        "FAKE_EXIT_CODES": codes,
        "FAKE_LOG": str(log),
    } | extra
    command = ["bash", str(SLURM_SCRIPT), "/shared/photos", "--backend", "clip"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


def test_slurm_tasks_run_the_same_command_each_on_its_shard(tmp_path):
    for task in (0, 7):
        result, calls = run_slurm_task(tmp_path, task, "0")
        assert result.returncode == 0, result.stderr
        assert calls == [f"{task}/8 4242 p w#$ run /shared/photos --backend clip"]


def test_slurm_task_reruns_exit_75_only(tmp_path):
    result, calls = run_slurm_task(tmp_path, 3, "75 75 0")
    assert result.returncode == 0 and len(calls) == 3, result.stderr
    assert "retryable" in result.stderr
    result, calls = run_slurm_task(tmp_path / "final", 3, "1")  # a fix is needed: no rerun
    assert result.returncode == 1 and len(calls) == 1
    result, calls = run_slurm_task(tmp_path / "tries", 3, "75", IMGVEC_ATTEMPTS="2")
    assert result.returncode == 75 and len(calls) == 2


def test_slurm_task_without_a_database_url_runs_nothing(tmp_path):
    result, calls = run_slurm_task(tmp_path, 0, "0", IMGVEC_SECRETS=str(tmp_path / "none"))
    assert result.returncode != 0 and "DATABASE_URL" in result.stderr and calls == []


def readme_commands() -> list[list[str]]:
    """The commands of deploy/README.md's ```sh blocks, continuation lines joined."""
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```sh\n(.*?)^```", readme, flags=re.M | re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [words for line in lines if (words := shlex.split(line, comments=True))]


def flags(words: list[str]) -> dict[str, str]:
    return dict(word[2:].partition("=")[::2] for word in words if word.startswith("--"))


def seconds(duration: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([smh])", duration).groups()  # type: ignore[union-attr]
    return int(number) * {"s": 1, "m": 60, "h": 3600}[unit]


def test_readme_gcloud_commands_create_the_yaml_jobs():
    jobs = {load(relative)["metadata"]["name"]: load(relative) for relative in CLOUD_RUN_JOBS}
    created = [w for w in readme_commands() if w[:4] == ["gcloud", "run", "jobs", "create"]]
    assert sorted(words[4] for words in created) == sorted(jobs)
    for words in created:
        job, given = jobs[words[4]], flags(words)
        execution = job["spec"]["template"]["spec"]
        task = execution["template"]["spec"]
        container = task["containers"][0]
        assert given["region"] == job["metadata"]["labels"]["cloud.googleapis.com/location"]
        assert given["image"] == container["image"]
        assert int(given["tasks"]) == execution["taskCount"]
        assert int(given["parallelism"]) == execution["parallelism"]
        assert seconds(given["task-timeout"]) == int(task["timeoutSeconds"])
        assert int(given["max-retries"]) == task["maxRetries"]
        assert given["service-account"] == task["serviceAccountName"]
        assert given["args"].split(",") == container["args"]
        limits = container["resources"]["limits"]
        assert (given["cpu"], given["memory"]) == (limits["cpu"], limits["memory"])
        assert given.get("gpu") == limits.get("nvidia.com/gpu")
        if "gpu" in given:
            assert given["gpu-type"] == task["nodeSelector"]["run.googleapis.com/accelerator"]
            assert "no-gpu-zonal-redundancy" in given
        env = dict(pair.split("=", 1) for pair in given["set-env-vars"].split(","))
        assert env == literal_env(container)
        secrets = dict(pair.split("=", 1) for pair in given["set-secrets"].split(","))
        assert secrets == {
            v["name"]: "{name}:{key}".format(**v["valueFrom"]["secretKeyRef"])
            for v in container["env"]
            if v["name"] in SECRET_NAMES
        }


def test_readme_names_files_that_exist():
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for link in re.findall(r"\]\(([^)#]+)\)", readme):
        assert (DEPLOY / link).is_file(), link
    named = [w for words in readme_commands() for w in words if w.startswith(("deploy/", "Dock"))]
    assert named and all((ROOT / word).is_file() for word in named), named


def instructions(dockerfile: str) -> list[str]:
    return [line for line in dockerfile.splitlines() if line and not line.startswith("#")]


def pip_installs(dockerfile: str) -> list[list[str]]:
    lines = dockerfile.replace("\\\n", " ").splitlines()
    runs = [line[4:] for line in lines if line.startswith("RUN ")]
    commands = [shlex.split(part) for run in runs for part in run.split("&&")]
    return [words for words in commands if words[:2] == ["pip", "install"]]


def test_cuda_dockerfile_is_the_cpu_one_but_for_the_torch_index():
    cpu = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    cuda = (ROOT / "Dockerfile.cuda").read_text(encoding="utf-8")
    assert "download.pytorch.org/whl/cpu " in cpu
    [cuda_index] = re.findall(r"download\.pytorch\.org/whl/(cu\d+) ", cuda)
    expected = [line.replace("whl/cpu ", f"whl/{cuda_index} ") for line in instructions(cpu)]
    assert instructions(cuda) == expected
    assert cuda_index in (DEPLOY / "README.md").read_text(encoding="utf-8")


def test_readme_installs_as_the_image_does():
    # Where there is no container (a Slurm cluster), the install commands are the image's.
    installs = pip_installs((ROOT / "Dockerfile").read_text(encoding="utf-8"))
    assert len(installs) == 2  # torch from its index first, then imgvec with every extra
    assert [["pip", *w[1:]] for w in readme_commands() if w[0].endswith("/pip")] == installs

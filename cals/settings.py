"""Every `CALS_*` environment variable, with its type and documented default, in one place.

Settings are pydantic-settings classes, one per consumer, so that a malformed sampler variable never
stops the Nuclio function. A variable is declared once, in the group that owns it; groups that need
it inherit it:

  CvatEnv       CVAT's address and credentials
  ModelEnv      registry, model config, device, runtime, schema, person detector: whatever loads a model
  ServingEnv    the Nuclio function (ModelEnv + request limits and the initial model)
  ServiceEnv    what the trainer, the sampler and the setup commands share (CvatEnv + ModelEnv + ...)
  TrainerEnv    the training sidecar (trainer/)
  SamplerEnv    the sampler service (sampler/)
  HostEnv       the host commands setup-project, check, pool-task and round
  ContainerEnv  read only by the Makefile, the scripts and docker compose; declared so the docs have one list

Values come from the process environment (an empty value counts as unset), then keyword overrides;
`load(env_file=...)` also reads a dotenv file (deploy/.env) under the environment. Field names are
the variable names without the `CALS_` prefix. deploy/.env.example documents exactly `variables()`,
with the defaults declared here (tests/test_env_example.py).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import Field, PositiveInt, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from cals import env_file as dotenv
from cals.errors import CalsError

PREFIX = "CALS_"
T = TypeVar("T", bound="CalsEnv")
log = logging.getLogger(__name__)


class SettingsError(CalsError):
    """A setting is missing or malformed; the message names its environment variable."""


class CalsEnv(BaseSettings):
    """Base of every group: the CALS_ prefix, exact names, empty means unset, unknown names ignored."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, case_sensitive=True, env_ignore_empty=True,
                                      extra="ignore", frozen=True)
    # {old name: new name}: a renamed variable still read, with a warning, where the new one is unset
    RENAMED: ClassVar[dict[str, str]] = {}

    @classmethod
    def load(cls: type[T], env_file: str | os.PathLike | None = None, **overrides: Any) -> T:
        """The group from the environment (and `env_file` beneath it), then `overrides`.

        Raises SettingsError naming every missing or malformed variable.
        """
        if env_file is not None and not Path(env_file).is_file():
            raise SettingsError(f"env file {env_file} not found: copy deploy/.env.example to it and fill in "
                                "CVAT's address and credentials")
        overrides = {**renamed(cls.RENAMED, dotenv.merged(env_file), overrides), **overrides}
        try:
            return cls(_env_file=env_file, **overrides)  # type: ignore[call-arg]
        except ValidationError as exc:
            raise SettingsError(describe(exc)) from None

    def require(self, *names: str, why: str = "") -> None:
        """Fail naming every variable among `names` that was not set, even where a default exists
        (a consumer that must not fall back on it, like the trainer's CALS_DATA)."""
        missing = [PREFIX + name for name in names
                   if name not in self.model_fields_set or getattr(self, name) in (None, "")]
        if missing:
            raise SettingsError(f"set {' and '.join(missing)}" + (f" ({why})" if why else ""))


def renamed(names: dict[str, str], values: dict[str, str], overrides: dict[str, Any]) -> dict[str, str]:
    """{new name: value} of each old name in `values` (environment and env file), so a deployment
    written before a rename keeps working; both names set to different values is an error."""
    found = {}
    for old, new in names.items():
        value = values.get(PREFIX + old)
        if not value:
            continue
        current = overrides.get(new) or values.get(PREFIX + new)
        if current and current != value:
            raise SettingsError(f"{PREFIX}{old}={value} and {PREFIX}{new}={current} are both set: {PREFIX}{old} "
                                f"is the old name of {PREFIX}{new}, remove it")
        log.warning("%s%s is deprecated: rename it %s%s", PREFIX, old, PREFIX, new)
        found[new] = value
    return found


def describe(exc: ValidationError) -> str:
    """pydantic's errors as one line per variable, in the words an admin acts on."""
    missing = [PREFIX + str(e["loc"][0]) for e in exc.errors() if e["type"] == "missing"]
    lines = [f"set {' and '.join(missing)}"] if missing else []
    for error in exc.errors():
        if error["type"] != "missing":
            name = PREFIX + str(error["loc"][0]) if error["loc"] else "settings"
            lines.append(f"{name}: {error['msg'].removeprefix('Value error, ')}, got {error['input']!r}")
    return "; ".join(lines)


class CvatEnv(CalsEnv):
    """CVAT's address and credentials (`cals/cvat/client.py`)."""

    CVAT_URL: str | None = Field(None, description="CVAT's address as this process reaches it")
    CVAT_USER: str | None = Field(None, description="CVAT account, with CALS_CVAT_PASSWORD")
    CVAT_PASSWORD: str | None = None
    CVAT_TOKEN: str | None = Field(None, description="personal access token instead of user/password (CVAT >= 2.26)")
    CVAT_POLL_SECONDS: float = Field(2.0, gt=0, description="poll period of CVAT's background requests")


class ModelEnv(CalsEnv):
    """Whatever loads a model: registry, model config, device, runtime, schema, person detector."""

    REGISTRY: str | None = Field(None, description="model registry folder, shared by trainer, sampler, function")
    CONFIG: str = Field("cpu", description="config of a model with no version to start from: cpu | rtmpose-m | "
                                           "FILE.py (`cals train`, the function's initial model); a model "
                                           "trained from a version (every trainer run) keeps that version's")
    POSE_BACKEND: Literal["auto", "onnxruntime", "openvino", "pytorch"] = Field(
        "auto", description="pose network runtime. auto: on CPU an int8 model runs with ONNX Runtime and an fp32 "
                            "export with OpenVINO (the fastest for RTMPose-m: docs/serving-speed.md; "
                            "cals.model.pose_network.AUTO_ORDER); a runtime that cannot load the model falls back "
                            "to the other, then to PyTorch, with a log line each; PyTorch on GPU. onnxruntime, "
                            "openvino or pytorch force one")
    POSE_PRECISION: Literal["auto", "fp32", "int8"] = Field(
        "auto", description="auto: int8 where the version's int8 model passed its check at registration "
                            "(cals.model.quantize: spine AP within 0.005 of fp32, median point within 1 px), "
                            "else fp32; fp32 or int8 force one")
    CACHE: Path = Field(Path.home() / ".cache" / "cals", description="downloads, cached base models, "
                                                                   "OpenVINO's compiled models")
    DEVICE: str | None = Field(None, description="inference/training device; default cuda:0 when present, else cpu")
    FLIP_TEST: bool | None = Field(None, description="1/0: average each crop with its mirror image (its cost: "
                                             "docs/serving-speed.md); unset: the model config's (on)")
    SCHEMA: Path | None = Field(None, description="keypoint schema YAML; default the bundled COCO-17 + spine")
    DETECTOR: str | None = Field(None, description="RTMDet person end2end.onnx (file, folder or URL)")
    CHECK_BELOW: float = Field(0.6, ge=0, le=1, description="points to check: a pre-annotated point scoring "
                                                             "below it is flagged (`check`) in CVAT")
    THREADS: int = Field(0, ge=0, description="torch, ONNX Runtime and OpenVINO threads per process; 0: the process's "
                                              "share of the host's cores (cores / processes sharing them)")

    @field_validator("POSE_BACKEND", "POSE_PRECISION", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class ServingEnv(ModelEnv):
    """The Nuclio function (serverless/README.md): request limits and the initial model, beside ModelEnv."""

    RENAMED = {"INIT_CONFIG": "CONFIG"}  # the initial model's config, function.yaml sets CALS_CONFIG
    DETECTOR_SCORE: float = Field(0.3, ge=0, le=1, description="person box score threshold")
    POINT_THRESHOLD: float = Field(0.0, ge=0, le=1, description="points scoring below it are sent as outside "
                                   "(0: only points off the image; a doubtful point is shown and flagged)")
    MAX_PIXELS: PositiveInt = Field(40_000_000, description="largest image decoded (8K x 5K)")
    INIT_CHECKPOINT: str | None = Field(None, description="COCO-17 checkpoint registered when the registry is empty")
    FUNCTION_WORKERS: PositiveInt = Field(1, description="Nuclio workers of the function (function.yaml's HTTP "
                                          "trigger numWorkers); each gets cores / workers threads")


class ServiceEnv(CvatEnv, ModelEnv):
    """What the trainer, the sampler and the host commands share, beside CvatEnv and ModelEnv."""

    DATA: str = Field("cals-data", description="working data: labelled set, queue, score cache, round reports")
    API_TOKEN: str | None = Field(None, description="bearer token between trainer, sampler and `make round`")
    WEBHOOK_SECRET: str | None = Field(None, description="CVAT signs webhooks with it; the trainer checks them")
    PROJECT_ID: PositiveInt | None = Field(None, description="the CVAT project")
    POOL: str = Field("cvat", description='"cvat" (the project\'s pool task) or a local COCO folder: what the '
                      "sampler ranks and the trainer's pool set reads")
    POOL_TASK: str = Field("pool", description="the CVAT task holding the unlabelled pool")
    PSEUDO_LABELS: bool = Field(True, description="the trainer also trains on the served model's confident spine "
                                "points of unlabelled pool frames; the sampler predicts the pool after each promotion "
                                "for it (into its score cache). Without them the pool's labels alone fell below "
                                "random order in the small-pool regime")
    FUNCTION_NAME: str | None = Field(None, description="Nuclio function the checks look for; default CPU or GPU build")

    @field_validator("PROJECT_ID", mode="before")
    @classmethod
    def _project_id(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip().isdigit():
            raise ValueError("must be a CVAT project id (a positive integer)")
        return value


class TrainerEnv(ServiceEnv):
    """The training sidecar (trainer/README.md)."""

    RENAMED = {"TRAIN_CONFIG": "CONFIG"}  # formerly the config of the trainer's first model
    QUEUE_DB: str | None = Field(None, description="run queue; default $CALS_DATA/queue.sqlite3")
    JOB_TRIGGER: str = "state:completed"
    TRAIN_ITERS: int = Field(100, ge=1)
    TRAIN_BATCH_SIZE: PositiveInt | None = Field(None, description="default: the model config's (per process)")
    TRAIN_PROCS: PositiveInt = Field(1, description="training processes per round (torchrun --nproc_per_node): "
                                     "one per GPU, or share a CPU host's cores")
    PROMOTE_MARGIN: float = Field(0.0, ge=0)
    PROMOTE_METRIC: str = "overall.AP"
    PROMOTE_CONFIDENCE: float = Field(0.95, ge=0, lt=1, description="keep the current model only when the "
                                      "candidate is worse with this confidence; 0: on any drop beyond the margin")
    VAL_FRACTION: float = Field(0.2, ge=0, le=0.99)
    EFFORT_TOLERANCE: float = Field(0.5, ge=0, le=1)
    POOL_LABELS: bool = Field(True, description="train on the pool's own labels (its body points) on frames no "
                              "person labelled yet, beside the labelled set")
    PSEUDO_THRESHOLD: float = Field(0.6, ge=0, le=1, description="a predicted point scoring below it carries no loss")
    HUMAN_SHARE: float = Field(0.5, gt=0, le=1, description="share of each batch's people from labelled frames "
                               "when the pool set is on (they are repeated); 1: the pool set is off")
    SAMPLER_URL: str | None = None
    TRAINER_BIND: str = "0.0.0.0:8010"
    WORKER: bool = True
    WORKER_POLL_SECONDS: float = Field(5.0, gt=0)
    CATCHUP_SECONDS: float = Field(300.0, ge=0, description="at start and then this often, queue the completed "
                                   "jobs of CALS_PROJECT_ID whose webhook never arrived (0: off). Each is one "
                                   "filtered listing: 2 requests for 1,000 completed jobs (python -m bench.catch_up)")


class SamplerEnv(ServiceEnv):
    """The sampler service (sampler/README.md)."""

    ROUND_SIZE: PositiveInt = 50
    JOB_SIZE: PositiveInt = 10
    AUTO_OPEN: bool = Field(False, description="open the next round when the trainer promotes")
    # both are strategy specs, checked at the sampler's start (cals.sampling.strategies.check_settings)
    SAMPLER_STRATEGY: str = Field("random", description="no strategy beat random order in make benchmark-al, "
                                  "on human labels alone or with the pool set (docs/label-efficiency.md): random "
                                  "is the default that does no harm")
    SAMPLER_UNCERTAINTY: str = Field("entropy", description="hybrid's shortlist strategy")
    SAMPLER_REDUCE: Literal["max", "mean", "sum"] = Field("max", description="people -> image score")
    SAMPLER_GROUP: str = Field("spine", description='schema point group scored ("all": every point)')
    SAMPLER_BATCH: PositiveInt = 16
    SAMPLER_RANKS: PositiveInt = Field(1, description="processes that score the pool (torchrun on this host, "
                                       "each with cores / ranks threads; started at the first scoring and kept)")
    SAMPLER_LABELLED: str | None = Field(None, description="COCO file for the pose strategy's shape space")
    SAMPLER_BIND: str = "0.0.0.0:8090"


class HostEnv(ServiceEnv):
    """The host commands setup-project, check, pool-task and round."""

    PROJECT_NAME: str = Field("CALS spine", description="project setup-project creates when CALS_PROJECT_ID is unset")
    TRAINER_URL: str = Field("http://trainer.cals.internal:8010", description="the trainer as CVAT's webhook worker "
                                                                              "reaches it (compose alias)")
    SAMPLER_PORT: int = Field(8091, description="host port of the sampler (loopback only)")


class ContainerEnv(CalsEnv):
    """Read only by the Makefile, the scripts and docker compose (deploy/README.md); declared so the docs have one list."""

    CVAT_INTERNAL_URL: str = "http://cvat_server:8080"
    REGISTRY_HOST: str = "/var/lib/cals/registry"
    NUCLIO_NETWORK: str = "cvat_cvat"
    NUCLIO_PLATFORM: str = "local"
    NUCLIO_DASHBOARD_URL: str = Field("http://localhost:8070", description="Nuclio's dashboard as this host reaches "
                                      "it: make deploy-function stops unless nuctl is its release")
    TORCH_INDEX: str = "https://download.pytorch.org/whl/cpu"
    IMAGE_TAG: str = "latest"
    TRAINER_PORT: int = 8010
    DETECTOR_URL: str | None = Field(None, description="detector zip the function's build downloads (function.yaml)")
    POSE_URL: str | None = Field(None, description="RTMPose-m checkpoint the function's build downloads")
    DETECTOR_FILE: str | None = Field(None, description="offline: local detector staged instead of DETECTOR_URL")
    POSE_FILE: str | None = Field(None, description="offline: local checkpoint staged instead of POSE_URL")
    DETECTOR_SHA256: str | None = Field(None, description="sha256 replacing the detector's pin (cals.model.pretrained)")
    POSE_SHA256: str | None = Field(None, description="sha256 replacing the checkpoint's pin (cals.model.pretrained)")


GROUPS: tuple[type[CalsEnv], ...] = (CvatEnv, ModelEnv, ServingEnv, ServiceEnv, TrainerEnv, SamplerEnv,
                                     HostEnv, ContainerEnv)


def variables() -> dict[str, FieldInfo]:
    """Every declared variable (with its prefix) and its field: the list deploy/.env.example documents."""
    return {PREFIX + name: info for group in GROUPS for name, info in group.model_fields.items()}


def default(variable: str) -> Any:
    """The declared default of a variable, e.g. default("CALS_PROMOTE_MARGIN") == 0.0."""
    return variables()[variable].default


SETTINGS_PAGE_INTRO = """\
# Settings

<!-- generated from cals/settings.py by `make docs`; tests/test_docs.py fails when it differs -->

Every `CALS_*` variable, declared once with its type and default in
[cals/settings.py](../cals/settings.py) (pydantic-settings). Each group below is what one consumer reads; a
group also reads the groups it names. A malformed value stops the service at start with the variable's
name. [deploy/.env.example](../deploy/.env.example) documents exactly these variables, and a test keeps
the two in step. Settings come from `deploy/.env` and the environment; a variable set in the shell wins.

**Which config a model gets.** A model trained from a registry version keeps that version's config,
whatever is set: its weights fit no other (`cals train --init VERSION|current`, every trainer round).
Otherwise, in this order: `cals train --config`, then `CALS_CONFIG`, then `cpu`. So `CALS_CONFIG` picks
the config of a model with no version to start from: `cals train` without `--init VERSION`, and the
function's initial model (function.yaml sets `rtmpose-m`, the architecture of its checkpoint). The
trainer has no first model to pick one for: it only fine-tunes, and with an empty registry its run
fails. `CALS_TRAIN_CONFIG` and `CALS_INIT_CONFIG`, its former names in the trainer and the function, are
still read with a warning (both set to different values: an error). Where the trainer follows a version
of another config than a `CALS_CONFIG` that is set, it logs a warning.
"""


def settings_page() -> str:
    """docs/settings.md: every variable under the group that declares it, so the page cannot drift."""
    parts = [SETTINGS_PAGE_INTRO]
    for group in GROUPS:
        own = [name for name in group.__annotations__ if name in group.model_fields]
        parents = [b.__name__ for b in group.__bases__ if b is not CalsEnv]
        parts.append(f"\n## {group.__name__}\n\n{' '.join((group.__doc__ or '').split())}"
                     + (f" Also reads {', '.join(parents)}." if parents else "") + "\n")
        if "RENAMED" in vars(group):  # declared by this group, not inherited
            parts.append("".join(f"\n`{PREFIX}{old}` is still read, with a warning, as `{PREFIX}{new}`.\n"
                                 for old, new in group.RENAMED.items()))
        parts.append("\n| variable | type | default | what it does |\n| --- | --- | --- | --- |\n")
        for name in own:
            info = group.model_fields[name]
            kind = str(group.__annotations__[name]).replace("|", "\\|")
            parts.append(f"| `{PREFIX}{name}` | `{kind}` | {_shown_default(info.default)} | "
                         f"{(info.description or '').replace('|', '/')} |\n")
    return "".join(parts)


def _shown_default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, Path) and value.is_relative_to(Path.home()):
        return f"`~/{value.relative_to(Path.home())}`"
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"

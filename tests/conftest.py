pytest_plugins = ["tests.cvat_server.pytest_plugin"]


import os  # noqa: E402
import shutil  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import pytest  # noqa: E402

BALANCED = "upright=0.2,bending=0.2,sitting=0.2,lying=0.2,twisting=0.2"
ALL_CORES: set[int] = set()  # an xdist worker's cores before it kept to its share


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--data-seed", type=int, default=0,
                     help="offset added to the seeds of the shared generated data (and so of the model the suite "
                          "trains): a suite that passes only at 0 asserts one model's luck, not the product")


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (make test: -n 2), each worker process keeps to its own share of the cores, as in
    a container of that size: the product sizes its thread pools from the cores it may use
    (cals/model/threads.py), so two workers never run twice as many threads as there are cores."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= count:
        ALL_CORES.update(cores)
        os.sched_setaffinity(0, cores[int(worker.removeprefix("gw")) % count::count])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files that use the session's trained model first, then files with a `slow` test, each file's tests
    in their order: xdist's --dist loadfile then starts the longest work early, instead of one worker
    finishing a long file alone at the end."""
    trained = {item.path for item in items if "trained" in getattr(item, "fixturenames", ())}
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: (item.path not in trained, item.path not in slow))


@pytest.fixture(scope="session")
def data_seed(request) -> int:
    return request.config.getoption("--data-seed")


@pytest.fixture(scope="session")
def schema():
    from cals.schema import load_schema

    return load_schema()


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory, data_seed):
    """Generated train (skewed like real data) and held-out val (balanced families) sets."""
    from cals.synth import generate_dataset, parse_mix

    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root / "train", 400, seed=1 + 2 * data_seed, progress=False)
    generate_dataset(root / "val", 100, seed=2 + 2 * data_seed, mix=parse_mix(BALANCED), progress=False)
    return root


@pytest.fixture(scope="session")
def trained(synthetic, tmp_path_factory, data_seed):
    """A registry with one CPU model trained from scratch on the synthetic train set.

    Under xdist the first worker that asks trains it, on every core while the others wait for it, and
    each worker copies that registry into its own (the data is generated from the same seeds)."""
    from cals.registry import Registry

    if not ALL_CORES:
        return _train_registry(synthetic, tmp_path_factory.mktemp("registry"))
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent  # one folder for all the workers of this run
    built, staging = shared / f"trained-registry-{data_seed}", shared / "trained-registry-staging"
    with FileLock(str(shared / "trained.lock")):
        if not built.exists():
            with _every_core():
                _train_registry(synthetic, staging)
            staging.rename(built)
    registry = Registry(shutil.copytree(built, tmp_path_factory.mktemp("registry") / "copy"))
    return registry, registry.current()


def _train_registry(synthetic, root):
    from cals.model.train import train
    from cals.registry import Registry

    registry = Registry(root)
    version = train(synthetic / "train", registry, iters=300, progress=False)
    registry.promote(version.id)
    return registry, version


@contextmanager
def _every_core():
    """The worker on every core for a while, its thread pools sized to them, then back to its share."""
    from cals.model import threads

    share = os.sched_getaffinity(0)
    os.sched_setaffinity(0, ALL_CORES)
    threads.configure()
    try:
        yield
    finally:
        os.sched_setaffinity(0, share)
        threads.configure()


@pytest.fixture
def project(cvat_client, schema):
    """A fresh CVAT project with the schema's skeleton label, removed afterwards."""
    import uuid

    created = cvat_client.projects.create({"name": f"cals-test-{uuid.uuid4().hex[:8]}",
                                           "labels": [schema.cvat_label()]})
    yield created
    cvat_client.projects.remove_by_ids([created.id])


class FunctionList:
    """Nuclio functions where CVAT lists them: the stand-in's own list, or, for a real CVAT, the
    Nuclio-dashboard stand-in it was started against (CVAT_NUCLIO_PORT). Listed, not invoked."""

    def __init__(self, server=None, dashboard=None) -> None:
        self._server, self._dashboard = server, dashboard

    def deploy(self, spec_yaml: str) -> str:
        """Make a function (its function.yaml text) appear in CVAT's list, as nuctl deploy does."""
        if self._server is not None:
            return self._server.deploy_function(spec_yaml)
        import yaml

        from tests.nuclio_dashboard import NuclioFunction

        function = NuclioFunction(config=yaml.safe_load(spec_yaml), handler=_not_invoked)
        self._dashboard.functions[function.name] = function
        return function.name

    def remove(self, name: str) -> None:
        if self._server is not None:
            self._server.remove_function(name)
        else:
            self._dashboard.functions.pop(name, None)


def _not_invoked(context, event):
    raise AssertionError("this function is listed only")


@pytest.fixture
def nuclio(cvat_server):
    """No function deployed, and `deploy`/`remove` to change that, on the stand-in or a real CVAT."""
    if cvat_server.server is not None:
        yield FunctionList(server=cvat_server.server)
        return
    import os
    import socket

    from tests.nuclio_dashboard import NuclioDashboard

    port = int(os.environ.get("CVAT_NUCLIO_PORT", 8070))
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            pytest.skip(f"127.0.0.1:{port} is taken: the Nuclio-dashboard stand-in must listen where the real "
                        "CVAT's CVAT_NUCLIO_PORT points")
    with NuclioDashboard([], port=port) as dashboard:
        yield FunctionList(dashboard=dashboard)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the item (`item.rep_call`), for fixtures that act on a failed test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)

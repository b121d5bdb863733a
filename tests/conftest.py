pytest_plugins = ["tests.cvat_server.pytest_plugin"]


import pytest  # noqa: E402

BALANCED = "upright=0.2,bending=0.2,sitting=0.2,lying=0.2,twisting=0.2"


@pytest.fixture(scope="session")
def schema():
    from cals.schema import load_schema

    return load_schema()


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """Generated train (skewed like real data) and held-out val (balanced families) sets."""
    from cals.synth import generate_dataset, parse_mix

    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root / "train", 400, seed=1, progress=False)
    generate_dataset(root / "val", 100, seed=2, mix=parse_mix(BALANCED), progress=False)
    return root


@pytest.fixture(scope="session")
def trained(synthetic, tmp_path_factory):
    """A registry with one CPU model trained from scratch on the synthetic train set."""
    from cals.model.train import train
    from cals.registry import Registry

    registry = Registry(tmp_path_factory.mktemp("registry"))
    version = train(synthetic / "train", registry, iters=300, progress=False)
    registry.promote(version.id)
    return registry, version


@pytest.fixture
def project(cvat_client, schema):
    """A fresh CVAT project with the schema's skeleton label, removed afterwards."""
    import uuid

    created = cvat_client.projects.create({"name": f"cals-test-{uuid.uuid4().hex[:8]}",
                                           "labels": [schema.cvat_label()]})
    yield created
    cvat_client.projects.remove_by_ids([created.id])

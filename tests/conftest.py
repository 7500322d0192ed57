"""Test set-up: two logical CPUs (for two-replica strategies), quiet TensorFlow logs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Must happen before TensorFlow initializes its devices: MirroredStrategy tests need two.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(ROOT, "..", "shared", "data")


def pytest_xdist_auto_num_workers(config):
    """Test processes for setup.cfg's `-n logical`: the cores this process may use, counted as
    the trainer counts them (CPU affinity and the cgroup's quota; psutil counts the host's, which
    in a container limited to 2 cores can be 64). `--maxprocesses=4` caps it after this."""
    from zoo.threads import usable_cores

    return usable_cores()


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data, or a skip naming what is missing."""
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(f"{SHARED_DATA} is absent: the shared datasets are not beside this checkout.")
    return SHARED_DATA

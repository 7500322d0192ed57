"""Image data sources, grids and the Fréchet distance (`zoo/images/`)."""

import os

import numpy as np
import pytest
import tensorflow as tf

from zoo import sources
from zoo.images import frechet, grid, shapes
from zoo.images.config import ImageDataConfig
from zoo.images.data import ImageData, split_indices


def _write(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    encoded = tf.io.encode_png(image) if path.endswith(".png") else tf.io.encode_jpeg(image, quality=100)
    tf.io.write_file(path, encoded)


def _folder(root, count=20, size=28, channels=1):
    """`count` images in two class sub-folders, PNG and JPEG mixed."""
    images, labels = shapes.draw(count, size, channels, seed=3)
    for i, image in enumerate(images):
        _write(os.path.join(root, f"class_{i % 2}", f"{i:03d}.{'png' if i % 3 else 'jpg'}"), image)
    return images, labels


def _data(path, **overrides):
    return ImageData(sources.parse(str(path)), ImageDataConfig(**overrides))


def test_folder_of_png_and_jpeg_with_class_folders(tmp_path):
    _folder(str(tmp_path / "imgs"))
    data = _data(tmp_path / "imgs")
    train, train_labels = data.split("train")
    val, _ = data.split("validation")
    assert train.shape == (18, 28, 28, 1) and val.shape == (2, 28, 28, 1) and train.dtype == np.uint8
    assert sorted(set(train_labels.tolist())) == [0, 1] and data.spec()["num_classes"] == 2
    # PNG is lossless: a PNG image comes back bit-exact (000.jpg is the first file, 001.png next).
    png = tf.io.decode_png(tf.io.read_file(str(tmp_path / "imgs" / "class_1" / "001.png"))).numpy()
    assert any(np.array_equal(png, image) for image in np.concatenate([train, val]))


def test_folder_converts_channels_and_resizes(tmp_path):
    _folder(str(tmp_path / "imgs"), count=10)
    data = _data(tmp_path / "imgs", channels=3, image_size=32)
    assert data.split("train")[0].shape == (9, 32, 32, 3)


def test_corrupt_image_is_named_or_skipped_with_a_count(tmp_path, capsys):
    _folder(str(tmp_path / "imgs"), count=10)
    bad = tmp_path / "imgs" / "class_0" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    expected = rf"{bad}: cannot decode the image \(Invalid PNG.*skip_bad_images"
    with pytest.raises(sources.DataError, match=expected):
        _data(tmp_path / "imgs").split("train")
    data = _data(tmp_path / "imgs", skip_bad_images=True)
    total = len(data.split("train")[0]) + len(data.split("validation")[0])
    assert total == 10 and data.skipped == 1 and data.spec()["skipped_images"] == 1
    assert f"Skipped 1 of 11 images in {tmp_path / 'imgs'}" in capsys.readouterr().err


def test_images_of_another_size_are_named(tmp_path):
    _folder(str(tmp_path / "imgs"), count=6)
    odd = tmp_path / "imgs" / "class_1" / "zz_odd.png"
    _write(str(odd), np.zeros((30, 28, 1), np.uint8))
    with pytest.raises(sources.DataError, match=rf"{odd}: 30x28 pixels, but the first image is 28x28"):
        _data(tmp_path / "imgs").split("train")


def test_npz_keys_split_and_float_pixels(tmp_path):
    images, labels = shapes.draw(100, 28, 1, seed=4)
    path = tmp_path / "digits.npz"
    np.savez(path, x_train=images[..., 0], y_train=labels)
    data = _data(path)
    train, train_labels = data.split("train")
    assert train.shape == (90, 28, 28, 1) and len(data.split("validation")[0]) == 10
    assert data.spec()["num_classes"] == len(shapes.CLASSES)
    index = split_indices(100, "train")
    np.testing.assert_array_equal(train[..., 0], images[index, ..., 0])
    np.testing.assert_array_equal(train_labels, labels[index])

    other = tmp_path / "other.npz"
    np.savez(other, pictures=images.astype(np.float32) / 255.0)
    expected = r"other.npz: no image array 'x_train'; arrays: \['pictures'\]"
    with pytest.raises(sources.DataError, match=expected):
        _data(other, image_key="x_train").split("train")
    floats = _data(other, image_key="pictures", max_validation_examples=5)
    assert len(floats.split("validation")[0]) == 5 and floats.split("train")[1] is None
    np.testing.assert_array_equal(np.sort(floats.split("train")[0].ravel())[-50:],
                                  np.sort(images[split_indices(100, "train", 0.1, 5)].ravel())[-50:])

    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.full((4, 8, 8), 300.0))
    with pytest.raises(sources.DataError, match=r"bad.npz: array 'x_train': pixel values span \[300, 300\]"):
        _data(bad).split("train")


def test_split_of_60000_is_55000_and_5000_fixed_and_disjoint():
    train, val = split_indices(60000, "train"), split_indices(60000, "validation")
    assert len(train) == 55000 and len(val) == 5000 and not set(train) & set(val)
    np.testing.assert_array_equal(val, split_indices(60000, "validation"))


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)), ("fashion_mnist", (28, 28, 1)),
                                        ("cifar10", (32, 32, 3))])
def test_tfds_image_datasets(name, shape, tmp_path):
    import tensorflow_datasets as tfds

    from zoo.vae.entry import Vae

    source = sources.parse(f"tfds:{name}")
    with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE):
        data = ImageData(source, ImageDataConfig())
        images, labels = data.split("train")
        assert images.shape == (24,) + shape and images.dtype == np.uint8
        assert data.spec()["num_classes"] == 10 and labels.max() < 10
        assert data.split("validation")[0].shape == (24,) + shape
        entry = Vae(Vae.preset("tiny"), str(tmp_path))
        entry.prepare(source)
        batch = next(iter(entry.dataset(source, "train", 8, training=True)))
    assert batch["images"].shape == (8,) + shape and batch["noise"].shape == (8, entry.config.latent_dim)
    assert 0.0 <= float(tf.reduce_min(batch["images"])) and float(tf.reduce_max(batch["images"])) <= 1.0


def test_unknown_builtin_and_unsupported_file(tmp_path):
    with pytest.raises(sources.DataError, match="builtin:nope: unknown builtin image data; builtins: builtin:shapes"):
        ImageData(sources.parse("builtin:nope"), ImageDataConfig()).split("train")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    expected = "notes.txt: expected a folder of PNG/JPEG images, an .npz file"
    with pytest.raises(sources.DataError, match=expected):
        _data(text).split("train")


def test_builtin_shapes_are_fixed_and_drawn_at_any_size():
    a, labels = shapes.split("validation")
    b, _ = shapes.split("validation")
    np.testing.assert_array_equal(a, b)
    assert a.shape == (1000, 28, 28, 1) and set(labels.tolist()) == set(range(len(shapes.CLASSES)))
    assert a.max() > 200 and a.min() < 40  # light shapes on a dark ground
    rgb, _ = shapes.draw(8, size=64, channels=3, seed=1)
    assert rgb.shape == (8, 64, 64, 3) and not np.array_equal(rgb[..., 0], rgb[..., 1])


def test_grid_places_images_and_writes_a_png(tmp_path):
    images = np.zeros((5, 4, 6, 1), np.float32)
    images[3] = 1.0
    path = str(tmp_path / "sub" / "grid.png")
    picture = grid.save(images, path, columns=3, padding=1)
    assert picture.shape == (2 * 5 + 1, 3 * 7 + 1, 1)
    assert (picture[6:10, 1:7] == 255).all() and (picture[1:5, 1:7] == 0).all()  # image 3: row 1, column 0
    np.testing.assert_array_equal(tf.io.decode_png(tf.io.read_file(path)).numpy(), picture)
    pairs, columns = grid.pairs(np.zeros((3, 2, 2, 1)), np.ones((3, 2, 2, 1)), pairs_per_row=3)
    assert columns == 6 and [int(p.max()) for p in pairs] == [0, 255] * 3


def test_frechet_distance_known_values():
    rng = np.random.RandomState(0)
    a = rng.randn(4000, 3)
    assert frechet.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    shifts = [frechet.frechet_distance(a, a + s) for s in (0.5, 1.0, 2.0)]
    np.testing.assert_allclose(shifts, [3 * 0.25, 3 * 1.0, 3 * 4.0], rtol=1e-9)  # |mean shift|^2
    # N(0, I) against N(0, 4 I) in 3 dimensions: Tr(I + 4I - 2 * 2I) = 3.
    assert frechet.frechet_distance(a, 2.0 * rng.randn(4000, 3)) == pytest.approx(3.0, rel=0.1)
    # Fewer samples than dimensions (singular covariances) still give a finite figure.
    assert np.isfinite(frechet.frechet_distance(rng.randn(5, 16), rng.randn(5, 16)))


def test_frechet_classifier_is_stable_and_separates_sets():
    images, labels = shapes.draw(600, 28, 1, seed=9)
    first = frechet.FrechetScorer(frechet.train_classifier(images, labels, steps=30, batch_size=32))
    second = frechet.FrechetScorer(frechet.train_classifier(images, labels, steps=30, batch_size=32))
    held_out, _ = shapes.draw(300, 28, 1, seed=10)
    noise = np.random.RandomState(0).randint(0, 256, held_out.shape).astype(np.uint8)
    same = first.distance(images[:300], held_out)
    assert same == second.distance(images[:300], held_out)  # same data and seed: same figure
    assert first.distance(held_out, held_out) == pytest.approx(0.0, abs=1e-6)
    assert first.distance(noise, held_out) > 5 * same
    # Without labels it learns flips instead, and still tells noise from shapes.
    flips = frechet.FrechetScorer(frechet.train_classifier(images, None, steps=30, batch_size=32))
    assert flips.classifier.get_layer("logits").units == frechet.FLIPS
    assert flips.distance(noise, held_out) > 5 * flips.distance(images[:300], held_out)


def test_unreadable_npz_is_named(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(sources.DataError, match=r"broken.npz: not a readable .npz file"):
        _data(path).split("train")

"""The level network's training data: films left out (``--leave-out``) lose all their positions
and nothing else."""
import numpy as np

from CobbAngleTools.train_levels import leave_out


def _cache():
    film = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    return {"names": np.array(["a.jpg", "b.jpg", "c.jpg"]), "film": film,
            "windows": np.arange(len(film))[:, None, None] * np.ones((1, 3, 2), np.uint8),
            "classes": np.arange(len(film)) % 21, "steps": np.linspace(10, 20, len(film)).astype(np.float32)}


def test_a_left_out_film_loses_its_positions_only():
    cache = _cache()
    kept = leave_out(cache, ["b.jpg", "not-a-training-film.jpg"])
    assert kept["film"].tolist() == [0, 0, 0, 2, 2, 2, 2]
    assert kept["windows"][:, 0, 0].tolist() == [0, 1, 2, 5, 6, 7, 8]
    assert kept["classes"].tolist() == [0, 1, 2, 5, 6, 7, 8]
    assert np.allclose(kept["steps"], cache["steps"][[0, 1, 2, 5, 6, 7, 8]])
    assert kept["names"].tolist() == cache["names"].tolist()  # film indices still point at the right names


def test_leaving_out_nothing_keeps_the_cache():
    cache = _cache()
    kept = leave_out(cache, [])
    assert all(np.array_equal(kept[k], cache[k]) for k in cache)

"""PIGEON's haversine label smoothing and the soft cross-entropy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from geotag.errors import DataError, InputError
from geotag.train.targets import haversine_targets, soft_cross_entropy

# Three cell centres on the equator, east of a photo taken at (0, 0). On the equator the
# haversine formula reduces to R * dlon: 1 degree = 6371.0088 km * pi / 180 = 111.19508 km.
CENTRE_LAT = [0.0, 0.0, 0.0]
CENTRE_LON = [0.5, 1.0, 2.0]
# d = 55.59754, 111.19508, 222.39016 km; minus the minimum: 0, 55.59754, 166.79262;
# tau = 75 km: exp(-0) = 1, exp(-0.741301) = 0.476494, exp(-2.223902) = 0.108186;
# sum 1.584680, so:
HAND = [0.631042, 0.300688, 0.068270]


def test_matches_the_hand_computed_case() -> None:
    targets = haversine_targets([0.0], [0.0], CENTRE_LAT, CENTRE_LON, tau_km=75)
    assert targets.dtype == torch.float32 and targets.shape == (1, 3)
    np.testing.assert_allclose(targets[0].numpy(), HAND, atol=2e-6)


def test_rows_sum_to_one_and_peak_at_the_true_cell() -> None:
    rng = np.random.default_rng(0)
    centre_lat, centre_lon = rng.uniform(8, 30, 50), rng.uniform(70, 90, 50)
    true_lat = np.r_[centre_lat[7], rng.uniform(8, 30, 9)]
    true_lon = np.r_[centre_lon[7], rng.uniform(70, 90, 9)]
    targets = haversine_targets(
        torch.tensor(true_lat), torch.tensor(true_lon), centre_lat, centre_lon, tau_km=75
    )
    assert targets.shape == (10, 50)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(10))
    assert int(targets[0].argmax()) == 7  # photo taken at centre 7


def test_equidistant_centres_share_equally_off_the_equator() -> None:
    targets = haversine_targets([10.5], [77.0], [10.0, 11.0], [77.0, 77.0], tau_km=25)
    torch.testing.assert_close(targets, torch.tensor([[0.5, 0.5]]))


def test_far_from_every_centre_with_tiny_tau_stays_finite() -> None:
    # 20,000 km with tau 1 km: exp(-20000) is 0.0 without subtracting the minimum.
    targets = haversine_targets([-0.5], [-179.0], [0.0, 0.0], [0.0, 1.0], tau_km=1)
    assert torch.isfinite(targets).all()
    torch.testing.assert_close(targets, torch.tensor([[1.0, 0.0]]))


def test_large_tau_tends_to_uniform() -> None:
    targets = haversine_targets([0.0], [0.0], CENTRE_LAT, CENTRE_LON, tau_km=1e9)
    torch.testing.assert_close(targets, torch.full((1, 3), 1 / 3))


def test_tensor_input_keeps_its_device_and_array_input_gives_cpu() -> None:
    lat = torch.zeros(2)
    assert haversine_targets(lat, lat, CENTRE_LAT, CENTRE_LON, 75).device == lat.device
    assert haversine_targets(np.zeros(2), [0, 0], CENTRE_LAT, CENTRE_LON, 75).device.type == "cpu"


@pytest.mark.parametrize("tau", [0.0, -5.0, float("nan")])
def test_tau_must_be_positive(tau: float) -> None:
    with pytest.raises(InputError, match=r"^--tau-km must be positive"):
        haversine_targets([0.0], [0.0], CENTRE_LAT, CENTRE_LON, tau)


def test_missing_location_is_a_data_error() -> None:
    with pytest.raises(DataError, match="image latitude is missing"):
        haversine_targets([float("nan")], [0.0], CENTRE_LAT, CENTRE_LON, 75)


def test_soft_cross_entropy_equals_cross_entropy_for_one_hot_targets() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 5) * 3
    labels = torch.tensor([0, 4, 2, 2, 1, 3])
    one_hot = F.one_hot(labels, 5).float()
    torch.testing.assert_close(soft_cross_entropy(logits, one_hot), F.cross_entropy(logits, labels))


def test_soft_cross_entropy_value_and_gradient_for_soft_targets() -> None:
    torch.manual_seed(1)
    logits = torch.randn(4, 3, requires_grad=True)
    targets = haversine_targets([0.0] * 4, [0.0, 0.6, 1.2, 2.5], CENTRE_LAT, CENTRE_LON, 75)
    loss = soft_cross_entropy(logits, targets)
    torch.testing.assert_close(loss, F.cross_entropy(logits, targets))
    loss.backward()
    expected = (logits.softmax(dim=1) - targets).detach() / 4
    torch.testing.assert_close(logits.grad, expected)


def test_soft_cross_entropy_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        soft_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 4))


@pytest.mark.parametrize("cell_km", [25.0, 100.0, 400.0])
def test_default_tau_keeps_about_half_the_target_on_the_true_cell(cell_km: float) -> None:
    # Uniform points in the interior cells of a real hexagon grid (cells whose six
    # neighbours all exist), scored with the default tau for that size.
    import shapely

    from geotag.geo.grid import make_grid
    from geotag.geo.locate import CellLocator
    from geotag.geo.regions import Region
    from geotag.geo.sample import Quota, cell_pieces, sample_points
    from geotag.train.targets import default_tau_km

    degrees = 12 * cell_km / 111.0
    grid = make_grid(Region("box", shapely.box(0, 0, degrees, degrees), "test"), cell_km)
    pieces = cell_pieces(grid.cells_in_plane(), grid.cells["region_fraction"].to_numpy(),
                         grid.region_projected)  # fmt: skip
    ids = grid.cells["cell_id"].to_numpy()
    points = sample_points(ids, pieces, grid.projection, Quota(per_cell=40), seed=0)
    lat_c, lon_c = grid.cells["center_lat"].to_numpy(), grid.cells["center_lon"].to_numpy()
    spacing = np.sort(np.hypot(lat_c[:, None] - lat_c, (lon_c[:, None] - lon_c)), axis=1)
    interior = ids[(spacing[:, 6] < 1.2 * spacing[:, 1]) & (grid.cells["region_fraction"] == 1)]
    inner = points[points["cell_id"].isin(interior)]
    assert len(inner) > 200
    targets = haversine_targets(inner["lat"].to_numpy(), inner["lon"].to_numpy(), lat_c, lon_c,
                                tau_km=default_tau_km(grid.cell_area_km2)).numpy()  # fmt: skip
    own = CellLocator(grid).cells(inner["lat"].to_numpy(), inner["lon"].to_numpy())
    share = targets[np.arange(len(inner)), np.searchsorted(ids, own)]
    assert 0.4 < share.mean() < 0.6


def test_a_large_tau_against_the_cells_is_warned_about() -> None:
    from geotag.train.targets import default_tau_km, tau_warning

    assert default_tau_km(100.0**2) == pytest.approx(32.0)
    assert tau_warning(32.0, 100.0**2) is None and tau_warning(70.0, 100.0**2) is None
    warning = tau_warning(75.0, 25.0**2)
    assert warning is not None and "the default here is 8 km" in warning

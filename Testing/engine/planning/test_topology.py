from autoseg.planning.topology import compute_topology


def test_isotropic_patch_pools_every_axis_until_edge_below_eight():
    topology = compute_topology((1.0, 1.0, 1.0), (35.5, 51, 35))
    assert topology.strides == ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2))
    assert topology.kernel_sizes == ((3, 3, 3),) * 4
    assert topology.patch_size == (40, 56, 40)
    assert topology.divisibility == (8, 8, 8)


def test_anisotropic_axis_waits_until_spacing_within_factor_two():
    topology = compute_topology((2.5, 0.8, 0.8), (64, 192, 160))
    assert topology.strides[1] == (1, 2, 2)
    assert topology.kernel_sizes[0] == (1, 3, 3)
    assert topology.kernel_sizes[1] == (3, 3, 3)
    assert topology.n_stages == 6


def test_lone_poolable_axis_needs_room_for_three_feature_maps():
    # Only axis 1 is fine enough; 10 voxels is below 3 * 4, so it must not be pooled.
    topology = compute_topology((5.0, 1.0, 5.0), (4, 10, 4))
    assert topology.strides == ((1, 1, 1),)


def test_patch_already_divisible_is_kept():
    topology = compute_topology((1.0, 1.0), (192, 160))
    assert topology.patch_size == (192, 160)
    assert topology.n_stages == 6

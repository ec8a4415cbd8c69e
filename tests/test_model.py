import torch

from helpers.model import REFERENCE_PARAMETER_COUNT, BasicBlock, ResNet, count_parameters


def test_reference_network_has_exactly_4697162_trainable_parameters():
    assert count_parameters(ResNet()) == REFERENCE_PARAMETER_COUNT == 4_697_162


def test_network_maps_a_batch_of_images_to_ten_logits():
    network = ResNet().eval()
    assert network(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_stages_have_4_4_3_blocks_at_64_128_256_channels():
    network = ResNet()
    assert [len(stage) for stage in network.stages] == [4, 4, 3]
    assert [stage[0].conv1.out_channels for stage in network.stages] == [64, 128, 256]
    assert [stage[0].conv1.stride[0] for stage in network.stages] == [1, 2, 2]


def test_convolutions_have_no_bias_and_projection_shortcuts_only_where_shape_changes():
    network = ResNet()
    convolutions = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(conv.bias is None for conv in convolutions)
    blocks = [m for m in network.modules() if isinstance(m, BasicBlock)]
    projected = [len(block.shortcut) > 0 for block in blocks]
    assert projected == [False] * 4 + [True] + [False] * 3 + [True] + [False] * 2


def test_depth_and_width_are_arguments():
    small = ResNet(blocks=(1, 1), widths=(8, 16), strides=(1, 2), stem_width=8)
    assert small(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    assert count_parameters(small) < 20_000


def test_layer_table_lists_every_block_with_its_output_shape_and_sums_to_the_total():
    from helpers.model import layer_table

    rows = layer_table(ResNet())
    assert [r["layer"] for r in rows][:2] == ["stem", "stage 1 block 1"] and len(rows) == 15
    assert rows[1]["output"] == (64, 32, 32) and rows[-3]["output"] == (256, 1, 1)
    assert sum(r["params"] for r in rows[:-1]) == rows[-1]["params"] == REFERENCE_PARAMETER_COUNT

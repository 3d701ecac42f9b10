"""Re-parameterisation is exact; the shipped variants stay inside their cost budgets."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from nnip.train.arch import ECB, SRNet, conv_macs_per_pixel, fit_state  # noqa: E402
from nnip.train.tasks import get_task, load_config  # noqa: E402


def _perturb(module: torch.nn.Module, seed: int = 0, size: float = 0.2) -> None:
    """Move every parameter off its initial value so no branch is trivially zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * size)


@pytest.mark.parametrize("cin,cout", [(8, 8), (3, 16), (16, 12)])
def test_ecb_fold_equals_branches(cin, cout):
    block = ECB(cin, cout).double()
    _perturb(block)
    x = torch.randn(2, cin, 11, 14, dtype=torch.float64)
    # Fused conv (what training and export run) vs the explicit five branches + identity,
    # borders included.
    torch.testing.assert_close(block(x), block.forward_branches(x), atol=1e-10, rtol=0)
    conv = block.to_conv()
    torch.testing.assert_close(conv(x), block.forward_branches(x), atol=1e-10, rtol=0)


def test_ecb_fold_float32_within_1e5():
    # Weights of a trained block's size (outputs of order 1): float32 rounding only.
    block = ECB(32, 32)
    _perturb(block, seed=3, size=0.02)
    x = torch.rand(1, 32, 24, 24)
    reference = block.double().forward_branches(x.double())
    block.float()
    assert reference.abs().max().item() > 0.5
    diff = (block.to_conv()(x).double() - reference).abs().max().item()
    assert diff < 1e-5


def test_fused_gradients_reach_every_branch():
    block = ECB(4, 4)
    block(torch.rand(1, 4, 8, 8)).square().sum().backward()
    # A constant through a zero-sum edge filter vanishes: the 1x1 biases before Sobel and
    # Laplacian are inert (in ECBSR too; float rounding aside), everything else learns.
    inert = {f"edges.{i}.conv.bias" for i in range(3)}
    for name, p in block.named_parameters():
        size = p.grad.abs().max().item()
        assert (size < 1e-6) if name in inert else (size > 1e-6), name


def test_srnet_plain_is_the_same_function():
    net = SRNet(channels=8, blocks=2).eval()
    _perturb(net, seed=1)
    x = torch.rand(2, 3, 13, 17)
    with torch.no_grad():
        out, plain = net(x), net.plain()(x)
    assert out.shape == (2, 3, 26, 34)
    assert (out - plain).abs().max().item() < 1e-5
    assert not any(isinstance(m, ECB) for m in net.plain().modules())


def test_untrained_srnet_is_nearest_upsampling():
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        y = SRNet(channels=8, blocks=1)(x)
    expected = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    # Only the edge branches' 1e-3 scales are not zero at start.
    assert (y - expected).abs().max().item() < 0.05


@pytest.mark.parametrize("variant,budget", [("fast", 160), ("quality", 700)])
def test_variant_cost_within_budget(variant, budget):
    task = get_task("upscale")
    model = task.build_model(load_config(task, variant))
    gflop_per_mp = 2 * conv_macs_per_pixel(model.plain()) / 1e3
    assert 0.5 * budget < gflop_per_mp <= budget


def test_layer_slopes_give_one_prelu_slope_per_layer_and_the_same_plain_function():
    net = SRNet(channels=8, blocks=2, slopes="layer").eval()
    assert all(act.weight.numel() == 1 for act in net.acts)
    _perturb(net, seed=2)
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert (net(x) - net.plain()(x)).abs().max().item() < 1e-5
    with pytest.raises(ValueError, match="slopes"):
        SRNet(channels=8, blocks=1, slopes="pixel")


def test_fit_state_takes_the_mean_of_per_channel_slopes_and_keeps_the_rest():
    source = SRNet(channels=4, blocks=1)
    with torch.no_grad():
        source.acts[0].weight.copy_(torch.tensor([0.0, 0.2, 0.4, 1.0]))
    target = SRNet(channels=4, blocks=1, slopes="layer")
    target.load_state_dict(fit_state(target, source.state_dict()))
    assert target.acts[0].weight.item() == pytest.approx(0.4)
    assert torch.equal(target.layers[1].conv3.weight, source.layers[1].conv3.weight)
    # Same network: nothing changes.
    same = fit_state(source, source.state_dict())
    assert all(torch.equal(same[k], v) for k, v in source.state_dict().items())


@pytest.mark.parametrize("slopes", ["layer", "channel"])
def test_fit_state_grows_a_network_wider_and_deeper_with_the_same_function(slopes):
    small = SRNet(channels=8, blocks=1, slopes=slopes).eval()
    _perturb(small, seed=3)
    big = SRNet(channels=12, blocks=3, slopes=slopes).eval()
    big.load_state_dict(fit_state(big, small.state_dict()))
    x = torch.rand(2, 3, 11, 13)
    with torch.no_grad():
        assert (big(x) - small(x)).abs().max().item() < 1e-5
    # And it can learn beyond it: the new channels' way to the output gets gradients.
    big.train()
    (big(x) - x.repeat_interleave(2, 2).repeat_interleave(2, 3)).abs().mean().backward()
    assert big.layers[-1].conv3.weight.grad[:, 8:].abs().sum().item() > 0
    assert big.layers[2].conv3.weight.grad.abs().sum().item() > 0  # a new block
    with pytest.raises(ValueError, match="does not fit"):
        small.load_state_dict(fit_state(small, big.state_dict()))


def test_fit_state_grows_the_lens_unet_with_the_same_function():
    """LensNet: ECBLevel stacks (``convs``) grow deeper, every width grows, the transposed
    up-convolution's new *input* channels (its first axis) are zeroed."""
    from nnip.train.lens_task import LensNet  # noqa: PLC0415

    small = LensNet(widths=(8, 12), blocks=(1, 2), slopes="layer").eval()
    _perturb(small, seed=5)
    big = LensNet(widths=(10, 16), blocks=(1, 4), slopes="layer").eval()
    _perturb(big, seed=6)  # the new channels' random weights must not reach the output
    big.load_state_dict(fit_state(big, small.state_dict()))
    image, optics = torch.rand(2, 3, 20, 22) * 0.8, torch.rand(2, 4, 20, 22)
    with torch.no_grad():
        grown, original = big(image, optics), small(image, optics)
    # float32 rounding of outputs ~30 in size (perturbed weights); a leak would be O(1)
    assert (grown - original).abs().max().item() < 1e-6 * original.abs().max().item() * 10
    big.train()
    big(image, optics).abs().mean().backward()
    assert big.mid.convs[3].conv3.weight.grad.abs().sum().item() > 0  # a new block learns

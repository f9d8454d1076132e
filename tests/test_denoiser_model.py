"""Shape tables, parameter count, round trips and CPU/CUDA agreement of the denoisers."""

import io

import pytest
import torch

from aslproc.models.denoiser import DeepASLDenoiser, ResUNetDenoiser, build

CASES = [  # (class, kwargs, input shape)
    (DeepASLDenoiser, {}, (1, 1, 16, 16)),
    (DeepASLDenoiser, {'in_channels': 3, 'features': 8, 'depth': 2}, (2, 3, 17, 9)),
    (DeepASLDenoiser, {'features': 4, 'depth': 1}, (1, 1, 1, 1)),
    (ResUNetDenoiser, {'in_channels': 5, 'features': 4}, (2, 5, 32, 32)),
    (ResUNetDenoiser, {'in_channels': 5, 'features': 4}, (1, 5, 33, 31)),
    (ResUNetDenoiser, {'in_channels': 1, 'features': 4, 'levels': 3}, (1, 1, 13, 7)),
    (ResUNetDenoiser, {'in_channels': 2, 'features': 4}, (3, 2, 5, 3)),
    (ResUNetDenoiser, {'in_channels': 2, 'features': 4}, (1, 2, 1, 1)),
]


def _device():
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


@pytest.mark.parametrize('cls,kwargs,shape', CASES)
def test_output_shape(cls, kwargs, shape):
    net = cls(**kwargs).to(_device()).eval()
    with torch.no_grad():
        out = net(torch.randn(shape, device=_device()))
    assert out.shape == (shape[0], 1, *shape[2:])
    assert torch.isfinite(out).all()


def test_published_configuration_parameter_count():
    # 1->48 conv (480) + 7 x 48->48 conv (7 x 20784) + 48->1 conv (433) + 8 PReLU x 48
    net = DeepASLDenoiser(in_channels=1, features=48, depth=8)
    assert sum(p.numel() for p in net.parameters()) == 480 + 7 * 20784 + 433 + 8 * 48
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 9


@pytest.mark.parametrize('arch,kwargs', [('published', {'features': 8, 'depth': 3}),
                                         ('aslproc', {'in_channels': 5, 'features': 4})])
def test_state_dict_and_torchscript_round_trip(arch, kwargs):
    torch.manual_seed(0)
    net = build(arch, **kwargs).eval()
    x = torch.randn(1, net.in_channels, 19, 12)
    copy = build(arch, **kwargs).eval()
    copy.load_state_dict(net.state_dict())
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buf)
    buf.seek(0)
    scripted = torch.jit.load(buf)
    with torch.no_grad():
        ref = net(x)
        assert torch.equal(copy(x), ref)
        assert torch.allclose(scripted(x), ref, atol=1e-6)


@pytest.mark.parametrize('bad', [{'in_channels': 0}, {'features': 0}])
def test_invalid_arguments(bad):
    with pytest.raises(ValueError, match='must be >= 1'):
        ResUNetDenoiser(**bad)
    with pytest.raises(ValueError, match='unknown denoiser architecture'):
        build('nope')


@pytest.mark.gpu
def test_cpu_and_cuda_agree():
    if not torch.cuda.is_available():
        pytest.skip('no CUDA device')
    torch.manual_seed(0)
    net = ResUNetDenoiser(in_channels=5, features=8).eval()
    x = torch.randn(2, 5, 33, 30)
    with torch.no_grad():
        cpu = net(x)
        gpu = net.cuda()(x.cuda()).cpu()
    assert torch.allclose(cpu, gpu, atol=1e-4, rtol=1e-4)

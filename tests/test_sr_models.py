"""Shape tables of the super-resolution generator and patch critic (tiny tensors)."""

from __future__ import annotations

import pytest
import torch

from aslproc.models.srgan import PatchCritic, SRGenerator

GENERATOR_CASES = [
    # (kwargs, input shape, output shape)
    ({'in_channels': 2, 'features': (4, 8)}, (1, 2, 16, 16, 16), (1, 1, 16, 16, 16)),
    ({'in_channels': 2, 'features': (4, 8)}, (2, 2, 9, 10, 11), (2, 1, 9, 10, 11)),
    ({'in_channels': 3, 'features': (4, 8, 8)}, (1, 3, 13, 14, 15), (1, 1, 13, 14, 15)),
    ({'in_channels': 1, 'features': (4,)}, (1, 1, 3, 5, 7), (1, 1, 3, 5, 7)),
    ({'in_channels': 2, 'features': (4, 8, 16), 'out_channels': 2}, (1, 2, 32, 20, 8),
     (1, 2, 32, 20, 8)),
]

CRITIC_CASES = [
    # (kwargs, input shape, output shape)
    ({'features': (4, 8, 16)}, (2, 1, 16, 16, 16), (2, 1, 2, 2, 2)),
    ({'features': (4, 8, 16)}, (1, 1, 9, 17, 32), (1, 1, 1, 3, 6)),
    ({'features': (4, 8), 'norm': 'none'}, (1, 1, 7, 8, 9), (1, 1, 2, 2, 3)),
    ({'in_channels': 2, 'features': (4, 8, 8, 8)}, (1, 2, 17, 20, 24), (1, 1, 1, 1, 1)),
]


@pytest.mark.parametrize(('kwargs', 'shape', 'expected'), GENERATOR_CASES)
def test_generator_shapes(kwargs, shape, expected):
    net = SRGenerator(**kwargs).eval()
    with torch.no_grad():
        assert tuple(net(torch.rand(shape)).shape) == expected


def test_generator_starts_as_identity():
    net = SRGenerator(2, (4, 8))
    x = torch.rand(1, 2, 6, 7, 5)
    assert torch.equal(net(x), x[:, :1])


@pytest.mark.parametrize(('kwargs', 'shape', 'expected'), CRITIC_CASES)
def test_critic_shapes(kwargs, shape, expected):
    net = PatchCritic(**kwargs).eval()
    with torch.no_grad():
        assert tuple(net(torch.rand(shape)).shape) == expected


def test_critic_has_no_batch_norm():
    net = PatchCritic(1, (4, 8, 16))
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    with pytest.raises(ValueError, match='no batch norm'):
        PatchCritic(1, (4, 8), norm='batch')


def test_too_small_inputs_raise():
    with pytest.raises(ValueError, match='below the minimum 4'):
        SRGenerator(2, (4, 8, 16))(torch.rand(1, 2, 3, 8, 8))
    critic = PatchCritic(1, (4, 8, 16))
    with pytest.raises(ValueError, match=f'minimum {critic.min_size}'):
        critic(torch.rand(1, 1, critic.min_size - 1, 16, 16))
    with pytest.raises(ValueError, match='expected'):
        SRGenerator(2, (4,))(torch.rand(1, 3, 8, 8, 8))


@pytest.mark.gpu
def test_cpu_and_cuda_agree():
    if not torch.cuda.is_available():
        pytest.skip('needs CUDA')
    torch.manual_seed(0)
    gen, critic = SRGenerator(2, (4, 8)), PatchCritic(1, (4, 8, 16))
    for p in gen.head.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.rand(1, 2, 16, 16, 16)
    with torch.no_grad():
        for net, inp in ((gen, x), (critic, x[:, :1])):
            cpu = net.eval()(inp)
            gpu = net.cuda()(inp.cuda()).cpu()
            net.cpu()
            assert torch.allclose(cpu, gpu, atol=1e-4, rtol=1e-4)

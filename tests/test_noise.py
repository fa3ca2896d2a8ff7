"""Counter-based noise: a pure function of (key, counter, shape), standard normal, uncorrelated."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from bvdm_data.diffusion.noise import _mix32_int, derive_key, keyed_normal, mix32


def test_tensor_and_host_hash_agree():
    x = torch.randint(0, 2**32, (500,), generator=torch.Generator().manual_seed(0))
    assert [int(v) for v in mix32(x)] == [_mix32_int(int(v)) for v in x]
    assert int(mix32(torch.tensor(2**32 + 5))) == _mix32_int(5)  # only the low 32 bits count


def test_rows_depend_only_on_their_key_and_counter():
    keys = torch.tensor([derive_key(1, t) for t in range(6)])
    together = keyed_normal(keys, 4, (1, 16, 16))
    assert torch.equal(together[3:4], keyed_normal(keys[3:4], 4, (1, 16, 16)))
    assert torch.equal(together.flip(0), keyed_normal(keys.flip(0), 4, (1, 16, 16)))
    assert not torch.equal(together, keyed_normal(keys, 5, (1, 16, 16)))
    assert keyed_normal(keys, 0, (3, 5)).shape == (6, 3, 5)  # odd pixel counts too


def test_noise_is_standard_normal_and_uncorrelated():
    keys = torch.tensor([derive_key(9, i) for i in range(64)])
    z = keyed_normal(keys, 1, (1, 64, 64))
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01
    assert stats.kstest(z.flatten().numpy(), "norm").pvalue > 1e-3
    img = z[:, 0]

    def corr(a, b):
        return float(np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1])

    assert abs(corr(img[:, :, 1:], img[:, :, :-1])) < 0.01  # horizontal neighbours
    assert abs(corr(img[:, 1:], img[:, :-1])) < 0.01        # vertical neighbours
    assert abs(corr(img[1:], img[:-1])) < 0.01              # neighbouring keys
    assert abs(corr(z, keyed_normal(keys, 2, (1, 64, 64)))) < 0.01  # successive steps


def test_derived_keys_differ_by_every_part():
    keys = {derive_key(k, p, t, c) for k in range(3) for p in (1, 2) for t in range(4) for c in range(20)}
    assert len(keys) == 3 * 2 * 4 * 20
    assert derive_key(1, 2) != derive_key(2, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_draws_the_same_noise():
    keys = torch.tensor([derive_key(3, i) for i in range(4)])
    assert torch.allclose(keyed_normal(keys.cuda(), 7, (8, 8)).cpu(), keyed_normal(keys, 7, (8, 8)), atol=1e-5)

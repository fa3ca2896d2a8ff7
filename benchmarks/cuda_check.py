"""Check the CUDA path and time batched SDEdit on a GPU (not a test: CI has no GPU).

    python benchmarks/cuda_check.py            # needs torch.cuda.is_available()

Checks that every stage keeps its tensors on the device and agrees with the
CPU: the U-Net (fp32 and bf16 autocast), training steps, the keyed noise
(drawn on the device: the same integers as on the CPU), batched SDEdit, the
mask rasteriser and whole clips (same masks and tracks on CPU and CUDA with
the simulated masks as labels; with labels redrawn from the painting, how many
mask pixels the float-rounding differences flip). Then
prints cells/s of SDEdit at t_s=200 for one cell at a time vs batches,
measured in one run.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import torch

from bvdm_data.diffusion import CosineSchedule, Denoiser, TrainConfig, UNet, flat_cells, sdedit, train_texture
from bvdm_data.diffusion.crops import CellCrops
from bvdm_data.diffusion.noise import derive_key, keyed_normal
from bvdm_data.masks.contours import rasterize


def keys(n: int, seed: int = 0) -> list[int]:
    return [derive_key(seed, i) for i in range(n)]


def main() -> None:
    assert torch.cuda.is_available(), "no CUDA device"
    cuda = torch.device("cuda")
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    torch.manual_seed(0)
    net = UNet()
    x, t = torch.rand(8, 1, 64, 64) * 2 - 1, torch.randint(0, 1000, (8,))
    cpu_eps = Denoiser(net, CosineSchedule()).eps(x, t)
    gpu = Denoiser(UNet().to(cuda), CosineSchedule(), cuda)
    gpu.model.load_state_dict(net.state_dict())
    gpu_eps = gpu.eps(x.to(cuda), t.to(cuda))
    assert gpu_eps.device.type == "cuda"
    print(f"U-Net fp32 cuda vs cpu: max abs diff {float((gpu_eps.cpu() - cpu_eps).abs().max()):.2e}")
    bf = Denoiser(gpu.model, gpu.schedule, cuda, bf16=True).eps(x.to(cuda), t.to(cuda))
    print(f"U-Net bf16 vs fp32: max abs diff {float((bf.cpu() - cpu_eps).abs().max()):.2e}, "
          f"mean {float((bf.cpu() - cpu_eps).abs().mean()):.2e}")

    masks = torch.zeros(4, 64, 64, dtype=torch.bool)
    masks[:, 20:44, 18:46] = True
    start = flat_cells(masks, torch.tensor([0.1, 0.2, 0.3, 0.4]), -0.9)
    noise_cpu = keyed_normal(torch.tensor(keys(4)), 7, (1, 64, 64))
    noise_gpu = keyed_normal(torch.tensor(keys(4), device=cuda), 7, (1, 64, 64))
    assert noise_gpu.device.type == "cuda"
    print(f"keyed noise cuda vs cpu: max abs diff {float((noise_gpu.cpu() - noise_cpu).abs().max()):.2e}")
    cpu_out = sdedit(Denoiser(net, CosineSchedule()), start, 50, keys(4))
    gpu_out = sdedit(gpu, start.to(cuda), 50, keys(4))
    print(f"SDEdit t=50 cuda vs cpu (same keys): max abs diff {float((gpu_out.cpu() - cpu_out).abs().max()):.2e}")

    crops = CellCrops(torch.rand(16, 1, 64, 64) * 2 - 1, torch.ones(16, 64, 64, dtype=torch.bool),
                      np.zeros(16, dtype=int), (0.0, 1.0), torch.zeros(16, 64, 64, dtype=torch.bool))
    with tempfile.TemporaryDirectory() as tmp:
        for bf16 in (False, True):
            r = train_texture(crops, f"{tmp}/{bf16}", TrainConfig(iterations=20, batch_size=8, bf16=bf16),
                              device=cuda, progress=False)
            print(f"train 20 steps on cuda, bf16={bf16}: loss {r.losses[0]:.3f} -> {r.losses[-1]:.3f}")

    centers = torch.rand(50, 2) * 200
    radii = 8 + torch.rand(50, 32) * 4
    angles, labels = torch.rand(50) * 3, torch.arange(1, 51)
    a = rasterize(centers, radii, angles, labels, (200, 200))
    b = rasterize(centers.to(cuda), radii.to(cuda), angles.to(cuda), labels.to(cuda), (200, 200))
    print(f"rasterize cuda == cpu: {bool(torch.equal(a, b.cpu()))}")

    # The whole pipeline on the GPU: same annotations as on the CPU, video close, tensors returned on the CPU.
    from bvdm_data import BVDMStream, check_clip

    kw = dict(clip_len=4, size=(128, 128), t_s=20, t_f=3, sampler="ddpm", density=3e-4, num_clips=2, gen_batch=2)
    for labels in ("masks", "painted"):
        on_cpu = list(BVDMStream("hela", labels=labels, **kw))
        on_gpu = list(BVDMStream("hela", device="cuda", labels=labels, **kw))
        for a, b in zip(on_cpu, on_gpu):
            check_clip(b)
        diff = max(float((a["video"] - b["video"]).abs().max()) for a, b in zip(on_cpu, on_gpu))
        same_tracks = all(torch.equal(a["tracks"], b["tracks"]) for a, b in zip(on_cpu, on_gpu))
        pixels = sum(int((a["masks"] != b["masks"]).sum()) for a, b in zip(on_cpu, on_gpu))
        total = sum(a["masks"].numel() for a in on_cpu)
        if labels == "masks":  # simulated masks come from the seed alone
            assert same_tracks and pixels == 0
        print(f"BVDMStream cuda vs cpu, labels={labels}: tracks {'identical' if same_tracks else 'DIFFER'}, "
              f"{pixels} of {total} mask pixels differ, video max abs diff {diff:.2e}")

    # Speed: cells/s of SDEdit at t_s=200, one cell at a time vs batched, bf16 off/on.
    fp32 = gpu
    for bf16 in (False, True):
        gpu = Denoiser(fp32.model, fp32.schedule, cuda, bf16=bf16)
        rates = {}
        for batch in (1, 64, 512):
            start = flat_cells(torch.ones(batch, 64, 64, dtype=torch.bool), 0.2, -0.9).to(cuda)
            sdedit(gpu, start, 5, keys(batch))
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            sdedit(gpu, start, 200, keys(batch))
            torch.cuda.synchronize()
            rates[batch] = batch / (time.perf_counter() - t0)
        print(f"SDEdit t_s=200, 64 px, bf16={bf16}: " + ", ".join(f"batch {b}: {r:.1f} cells/s" for b, r in rates.items())
              + f"; batch 512 / batch 1 = {rates[512] / rates[1]:.0f}x")


if __name__ == "__main__":
    main()

"""PyTorch side of the model benchmark: the same forward pass and training step as `npm run bench:model`, timed
on this machine with PyTorch (Debian's python3-torch 1.13 / python3-torchvision 0.14), so the kit's ratio
columns come from one run instead of numbers copied from elsewhere.

    /usr/bin/python3 scripts/bench-pytorch.py --official /path/to/Microscopic-Mamba --threads 2
    npm run bench:pytorch -- --official /path/to/Microscopic-Mamba/microscopicmamba.py

Rows (each: forward in eval mode under no_grad, and one training step = forward in train mode,
cross-entropy, backward, Adam update; median seconds of --reps timed runs after one warm-up):
  microscopic-mamba-t (official)  the official `VSSM` (microscopicmamba.py, depths 2-2-4-2, dims 96..768,
                                  2 classes, its defaults), at --size px, batch --batch, once per scan:
                                    reference  scripts/fixtures/torch_scan_ref.py's `selective_scan_ref`
                                               (mamba_ssm's pure-PyTorch reference: one step per position)
                                    chunked    a vectorised chunked scan (below): the same recurrence in
                                               chunks of --chunk positions, each chunk one batched product
                                  The CUDA kernel of mamba_ssm cannot run on a CPU; these are its stand-ins.
  resnet18 (torchvision)          torchvision.models.resnet18(num_classes=2) at --size px, batch --resnet-batch
                                  (the speed target's config: 64 px, batch 32).

Denormals are flushed (`torch.set_flush_denormal(True)`), as an informed user would: the scan's decaying
states underflow into denormal floats, which x86 CPUs compute ~100x slower — on an Intel Xeon of this
machine kind the official forward takes 33 s without the flush and 1.6 s with it. `--no-flush-denormal`
measures without. Threads: `torch.set_num_threads(--threads)` (bench:model passes the kit's count).

Output: one JSON object on stdout (also written to --out): versions, threads, flush, machine, load, rows,
and `skipped` entries with a reason (no --official, a failed import, ...). Without torch it prints a JSON
object whose `skipped` says so and exits 0, so callers show the reason instead of failing.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def machine():
    return {'cpu': cpu_model(), 'cores': os.cpu_count(), 'python': platform.python_version()}


def emit(result, out):
    text = json.dumps(result, indent=2)
    if out:
        tmp = f'{out}.tmp-{os.getpid()}'
        with open(tmp, 'w') as f:
            f.write(text + '\n')
        os.replace(tmp, out)
    print(text)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--official', default=os.environ.get('MSM_OFFICIAL_MM', ''),
                    help='the official Microscopic-Mamba checkout or its microscopicmamba.py (default $MSM_OFFICIAL_MM)')
    ap.add_argument('--threads', type=int, default=0, help='torch.set_num_threads (default: the cores)')
    ap.add_argument('--size', type=int, default=64, help='input px (default 64)')
    ap.add_argument('--batch', type=int, default=8, help='Microscopic-Mamba batch (default 8)')
    ap.add_argument('--resnet-batch', type=int, default=32, help='ResNet-18 batch (default 32)')
    ap.add_argument('--reps', type=int, default=3, help='timed repetitions after one warm-up (default 3)')
    ap.add_argument('--scans', default='reference,chunked', help='official model scans: reference, chunked (default both)')
    ap.add_argument('--chunk', type=int, default=32, help='positions per chunk of the chunked scan (default 32)')
    ap.add_argument('--modes', default='forward,train', help='forward, train (default both)')
    ap.add_argument('--no-resnet', action='store_true', help='skip torchvision ResNet-18')
    ap.add_argument('--no-flush-denormal', action='store_true', help='keep denormals (slow; see the docstring)')
    ap.add_argument('--check-scan', action='store_true',
                    help='only compare the chunked scan with the reference scan on random inputs; print JSON')
    ap.add_argument('--out', default='', help='also write the JSON here')
    return ap.parse_args(argv)


def official_file(path):
    """The official microscopicmamba.py from a checkout folder or the file itself."""
    if os.path.isdir(path):
        path = os.path.join(path, 'microscopicmamba.py')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'--official {path}: no microscopicmamba.py there (give the official '
                                'Microscopic-Mamba checkout or the file)')
    return path


def chunked_scan(torch, F):
    """A vectorised selective scan with the signature of mamba_ssm's `selective_scan_fn` (forward only through
    autograd; the same math as torch_scan_ref.selective_scan_ref). Within a chunk of T positions,
        h_l = exp(S_l)·h_0 + Σ_{k≤l} exp(S_l − S_k)·Δ_k·B_k·u_k,   S_l = Σ_{j≤l} Δ_j·A   (S_l − S_k ≤ 0: no overflow)
    is one masked [T, T] product per (batch, channel, state); chunks run in sequence, carrying h."""
    def scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False):
        dtype_in = u.dtype
        u, delta, A = u.float(), delta.float(), A.float()
        if delta_bias is not None:
            delta = delta + delta_bias.float()[:, None]
        if delta_softplus:
            delta = F.softplus(delta)
        b, d, length = u.shape
        n = A.shape[1]

        def per_channel(M):  # [b, n, l] or [b, g, n, l] → [b, d, n, l]
            M = M.float()
            if M.dim() == 3:
                return M[:, None].expand(b, d, n, length)
            return M.repeat_interleave(d // M.shape[1], dim=1)

        Bc, Cc = per_channel(B), per_channel(C)
        h = u.new_zeros((b, d, n))
        ys = []
        for s in range(0, length, CHUNK['T']):
            e = min(s + CHUNK['T'], length)
            dA = delta[:, :, None, s:e] * A[None, :, :, None]  # [b, d, n, T]
            S = torch.cumsum(dA, dim=-1)  # [b, d, n, T]
            drive = delta[:, :, None, s:e] * Bc[..., s:e] * u[:, :, None, s:e]  # [b, d, n, T]
            T = e - s
            causal = torch.ones(T, T, dtype=torch.bool, device=u.device).tril()  # k ≤ l
            diff = (S[..., :, None] - S[..., None, :]).masked_fill(~causal, float('-inf'))  # [b, d, n, T, T]
            hs = torch.einsum('bdnlk,bdnk->bdnl', torch.exp(diff), drive) + torch.exp(S) * h[..., None]  # [b, d, n, T]
            ys.append((hs * Cc[..., s:e]).sum(2))  # [b, d, T]
            h = hs[..., -1]
        y = torch.cat(ys, dim=-1)  # [b, d, l]
        if D is not None:
            y = y + u * D.float()[:, None]
        if z is not None:
            y = y * F.silu(z.float())
        y = y.to(dtype_in)
        return (y, h) if return_last_state else y

    return scan


CHUNK = {'T': 32}


def timed(fn, reps):
    fn()  # warm-up: allocator, oneDNN primitive caches
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def bench_model(torch, model, x, y, modes, reps):
    """Median seconds of an eval forward and of a training step (Adam, as the kit's trainer)."""
    out = {}
    if 'forward' in modes:
        model.eval()

        def forward():
            with torch.no_grad():
                model(x)
        out['forward'], out['forwardAll'] = timed(forward, reps)
    if 'train' in modes:
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            loss.item()
        out['train'], out['trainAll'] = timed(step, reps)
    return out


def check_scan(torch, F, ref):
    g = torch.Generator().manual_seed(0)
    b, d, n, length, groups = 2, 8, 16, 100, 4
    u = torch.randn(b, d, length, generator=g)
    delta = torch.randn(b, d, length, generator=g) * 0.5
    A = -torch.exp(torch.randn(d, n, generator=g))
    B = torch.randn(b, groups, n, length, generator=g)
    C = torch.randn(b, groups, n, length, generator=g)
    D = torch.randn(d, generator=g)
    z = torch.randn(b, d, length, generator=g)
    bias = torch.randn(d, generator=g) * 0.1
    args = dict(D=D, z=z, delta_bias=bias, delta_softplus=True)
    want = ref(u, delta, A, B, C, **args)
    got = chunked_scan(torch, F)(u, delta, A, B, C, **args)
    rel = float((got - want).abs().max() / want.abs().max())
    return {'check': 'chunked scan vs reference scan', 'chunk': CHUNK['T'], 'length': length, 'maxRelativeDiff': rel}


def main(argv):
    args = parse_args(argv)
    base = {'tool': 'scripts/bench-pytorch.py', 'machine': machine(), 'rows': [], 'skipped': []}
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        base['skipped'].append({'what': 'all', 'reason': f'PyTorch is not importable by {sys.executable} ({e}); '
                                'install Debian\'s python3-torch and python3-torchvision'})
        emit(base, args.out)
        return 0
    CHUNK['T'] = max(1, args.chunk)
    sys.path.insert(0, os.path.join(HERE, 'fixtures'))
    from torch_scan_ref import import_reference, selective_scan_ref, stub_module  # noqa: E402
    if args.check_scan:
        emit({**base, **check_scan(torch, F, selective_scan_ref)}, args.out)
        return 0

    threads = args.threads if args.threads > 0 else (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    flush = not args.no_flush_denormal
    flush_ok = torch.set_flush_denormal(flush) if flush else (torch.set_flush_denormal(False) and False)
    modes = [m for m in args.modes.split(',') if m]
    result = {
        **base,
        'torch': torch.__version__,
        'threads': torch.get_num_threads(),
        'flushDenormal': bool(flush_ok),
        'flushDenormalNote': ('torch.set_flush_denormal(True): denormals flushed to zero (the scan\'s decaying states '
                              'underflow; without the flush the official forward is ~20x slower on x86)'
                              if flush_ok else 'denormals NOT flushed (--no-flush-denormal, or the CPU lacks DAZ/FTZ)'),
        'loadAverage': {'start': os.getloadavg()[0]},
        'size': args.size,
    }
    torch.manual_seed(0)

    # ---- the official Microscopic-Mamba ----
    if not args.official:
        result['skipped'].append({'what': 'microscopic-mamba-t (official)',
                                  'reason': 'no --official given (path to the official Microscopic-Mamba checkout '
                                            'or its microscopicmamba.py; or set MSM_OFFICIAL_MM)'})
    else:
        try:
            path = official_file(args.official)
            stub_module('utils', seed=lambda *a, **k: None)  # the official utils module only provides seed()
            official = import_reference(path, 'microscopicmamba')
            scans = {'reference': selective_scan_ref, 'chunked': chunked_scan(torch, F)}
            x = torch.randn(args.batch, 3, args.size, args.size)
            y = torch.randint(0, 2, (args.batch,))
            for name in [s for s in args.scans.split(',') if s]:
                if name not in scans:
                    raise ValueError(f'--scans: unknown scan {name!r} (reference, chunked)')
                torch.manual_seed(0)
                model = official.VSSM(num_classes=2, depths=[2, 2, 4, 2], dims=[96, 192, 384, 768])
                for m in model.modules():
                    if hasattr(m, 'selective_scan'):
                        m.selective_scan = scans[name]
                # only the file's name: the folder is this machine's, not something a committed table should carry
                row = {'model': 'microscopic-mamba-t (official)', 'source': os.path.basename(path), 'scan': name,
                       'chunk': CHUNK['T'] if name == 'chunked' else None,
                       'size': args.size, 'batch': args.batch}
                row.update(bench_model(torch, model, x, y, modes, args.reps))
                result['rows'].append(row)
                print(f'# {row["model"]} {name} scan: ' +
                      ', '.join(f'{m} {row[m]:.3f} s' for m in modes), file=sys.stderr)
        except Exception as e:  # report, keep the ResNet row
            result['skipped'].append({'what': 'microscopic-mamba-t (official)',
                                      'reason': f'{type(e).__name__}: {e}'.splitlines()[0][:300]})

    # ---- torchvision ResNet-18 ----
    if args.no_resnet:
        result['skipped'].append({'what': 'resnet18 (torchvision)', 'reason': '--no-resnet'})
    else:
        try:
            import torchvision
            torch.manual_seed(0)
            model = torchvision.models.resnet18(num_classes=2)
            x = torch.randn(args.resnet_batch, 3, args.size, args.size)
            y = torch.randint(0, 2, (args.resnet_batch,))
            row = {'model': 'resnet18 (torchvision)', 'torchvision': torchvision.__version__,
                   'size': args.size, 'batch': args.resnet_batch}
            row.update(bench_model(torch, model, x, y, modes, args.reps))
            result['rows'].append(row)
            print(f'# resnet18 (torchvision): ' + ', '.join(f'{m} {row[m]:.3f} s' for m in modes), file=sys.stderr)
        except ImportError as e:
            result['skipped'].append({'what': 'resnet18 (torchvision)', 'reason': f'torchvision is not importable ({e})'})
    result['loadAverage']['end'] = os.getloadavg()[0]
    emit(result, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))

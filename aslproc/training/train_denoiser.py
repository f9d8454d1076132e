"""Train the ΔM denoiser on simulator data and export the shipped weight format.

    python -m aslproc.training.train_denoiser --out DIR --seed 0 --steps N --lambda 0.2 \\
        [--arch published|aslproc] [--quick]

Writes ``DIR/loss.csv`` (step, train loss and terms, validation loss, seconds),
``DIR/checkpoint.pt`` (model + optimiser, every ``--checkpoint-every`` steps; a rerun with
the same DIR resumes from it), and ``DIR/denoiser.pt`` (state_dict, architecture kwargs,
input channels, normalisation constants and training metadata; see
:func:`aslproc.models.infer.save_denoiser`). ``--quick`` trains a tiny model on two tiny
subjects in seconds (tests).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from aslproc.models import denoiser, infer
from aslproc.training import data, losses
from aslproc.utils import denoise as dnu

logger = logging.getLogger(__name__)

#: Input channels: the paper's single ΔM channel; aslproc's ΔM of the slice and the slices
#: below and above plus the noise SD, either plain or as residuals from the subject's
#: tissue model plus that model (``--inputs``); ``--m0`` adds the relative M0.
INPUT_CHANNELS = {'published': ('dm',), 'plain': dnu.PLAIN_CHANNELS,
                  'tissue': dnu.TISSUE_MODEL_CHANNELS,
                  'hybrid': dnu.PLAIN_CHANNELS + ('tissue',)}


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='train_denoiser', description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--out', type=Path, required=True, help='output folder')
    p.add_argument('--seed', type=int, default=0, help='seed of simulation and training')
    p.add_argument('--steps', type=int, default=3000, help='optimiser steps')
    p.add_argument('--lambda', dest='lam', type=float, default=0.2,
                   help='weight of the noise term (1 - lambda on the kinetic term)')
    p.add_argument('--arch', choices=('aslproc', 'published'), default='aslproc')
    p.add_argument('--inputs', choices=('plain', 'tissue', 'hybrid'), default='plain',
                   help="input channels of the 'aslproc' arch (the published arch: ΔM only)")
    p.add_argument('--features', type=int, default=None, help='filters (default per arch)')
    p.add_argument('--subjects', type=int, default=48, help='simulated training subjects')
    p.add_argument('--val-subjects', type=int, default=4, help='held-out subjects')
    p.add_argument('--bank', type=Path, default=None, help='pickle cache of simulated subjects')
    p.add_argument('--sim-workers', type=int, default=1,
                   help='processes simulating the subjects (the data do not depend on it)')
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--patch', type=int, default=64, help='patch side (DeepASL: 40)')
    p.add_argument('--lr', type=float, default=1e-3, help='Adam learning rate (cosine decay)')
    p.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    p.add_argument('--checkpoint-every', type=int, default=250)
    p.add_argument('--m0', action='store_true', help='add the relative M0 input channel')
    p.add_argument('--init', type=Path, default=None,
                   help='start from these weights (a denoiser.pt or a checkpoint.pt of the '
                   'same architecture): fine-tuning')
    p.add_argument('--stop-after', type=int, default=None,
                   help='stop (and export) after this step of the --steps schedule')
    p.add_argument('--lesion-weight', type=float, default=0.0,
                   help='extra weight of the kinetic loss in and around focal lesions')
    p.add_argument('--bias-weight', type=float, default=0.0,
                   help='weight of the squared lesion-scale CBF bias, estimated from twin '
                   'samples (two disjoint pair subsets of one truth); 0: ordinary batches')
    p.add_argument('--heterogeneous', type=float, default=0.0,
                   help="share of subjects with the lesion benchmark's heterogeneous perfusion "
                   '(territories, 6-25 mm lesions, GM/WM border)')
    p.add_argument('--quick', action='store_true', help='tiny model and data, seconds')
    return p


def _to_torch(b: dict) -> dict:
    return {k: (v if k == 'params' else torch.from_numpy(v)) for k, v in b.items()}


#: Noise SD (normalised units) below which samples are not up-weighted further: per-sample
#: losses are weighted by 1 / (sigma^2 + SIGMA_FLOOR^2) so that one-pair, very low-SNR
#: samples (whose error is large whatever the model does) do not dominate every batch.
SIGMA_FLOOR = 0.2


def _loss(model, b, lam, channels, bias_weight=0.0):
    x = b['inputs']
    noisy = b['noisy']
    w = 1.0 / (b['sigma'] ** 2 + SIGMA_FLOOR**2)
    return losses.deepasl_loss(model(x), noisy, b['noise'], b['to_x'], b['m0'],
                               b['cbf_true'], b['params'], b['mask'], lam, weight=w / w.mean(),
                               bias_weight=bias_weight)


def _banks(args):
    if args.quick:
        subj = [data.make_subject(np.random.default_rng([args.seed, i]), n_pairs=6, quick=True)
                for i in range(2)]
        return subj, subj
    bank = data.make_bank(args.subjects + args.val_subjects, args.seed, cache=args.bank,
                          workers=args.sim_workers, heterogeneous=args.heterogeneous)
    return bank[:args.subjects], bank[args.subjects:]


def _logged_seconds(log_path: Path, step: int) -> float:
    """Training seconds that the log of an interrupted run records up to ``step``."""
    with open(log_path, newline='') as fh:
        rows = [r for r in csv.DictReader(fh) if int(r['step']) <= step]
    return float(rows[-1]['seconds']) if rows else 0.0


def train(args) -> dict:
    """Run the training loop described by parsed ``args``; returns the final metadata."""
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, args.threads))
    rng = np.random.default_rng(args.seed)
    if args.quick:
        args.steps, args.batch, args.patch = min(args.steps, 30), 4, 24
    key = 'published' if args.arch == 'published' else args.inputs
    channels = INPUT_CHANNELS[key] + (('m0',) if args.m0 else ())
    feats = args.features or (4 if args.quick else (48 if args.arch == 'published' else 24))
    kwargs = {'in_channels': len(channels), 'features': feats}
    model = denoiser.build(args.arch, **kwargs)
    if args.init is not None:
        blob = torch.load(args.init, map_location='cpu', weights_only=True)
        model.load_state_dict(blob.get('state_dict', blob.get('model')))
        logger.info('initialised from %s', args.init)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s / args.steps, 1.0))))
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt, start = args.out / 'checkpoint.pt', 0
    if ckpt.exists() and not args.quick:
        state = torch.load(ckpt, map_location='cpu', weights_only=True)
        model.load_state_dict(state['model'])
        opt.load_state_dict(state['opt'])
        sched.load_state_dict(state['sched'])
        start = int(state['step'])
        rng = np.random.default_rng([args.seed, start])
        logger.info('resumed from step %d', start)
    t0 = time.time()
    train_bank, val_bank = _banks(args)
    vrng = np.random.default_rng([args.seed, 999])
    paired = args.bias_weight > 0
    val = [_to_torch(data.batch(vrng, val_bank, channels, args.batch, args.patch,
                                args.lesion_weight, paired))
           for _ in range(2 if args.quick else 8)]
    sim_s = time.time() - t0
    log_path = args.out / 'loss.csv'
    new_log = start == 0 or not log_path.exists()
    earlier_s = 0.0 if new_log else _logged_seconds(log_path, start)
    log = open(log_path, 'w' if new_log else 'a', newline='')
    writer = csv.writer(log)
    if new_log:
        writer.writerow(['step', 'loss', 'noise', 'kinetic', 'bias', 'val_loss', 'lr',
                         'seconds'])

    def validate():
        model.eval()
        with torch.no_grad():
            v = float(np.mean([_loss(model, b, args.lam, channels, args.bias_weight)[0].item()
                               for b in val]))
        model.train()
        return v

    first_val = validate() if start == 0 else None
    history = []
    last = min(args.steps, args.stop_after or args.steps)
    for step in range(start + 1, last + 1):
        b = _to_torch(data.batch(rng, train_bank, channels, args.batch, args.patch,
                                 args.lesion_weight, paired))
        loss, terms = _loss(model, b, args.lam, channels, args.bias_weight)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        history.append([loss.item(), terms['noise'], terms['kinetic'], terms['bias']])
        every = 5 if args.quick else 50
        if step % every == 0 or step == last:
            v = validate() if (step % (every * 4) == 0 or step == last) else ''
            m = np.mean(history[-every:], axis=0)
            writer.writerow([step, *np.round(m, 6), v if v == '' else round(v, 6),
                             sched.get_last_lr()[0], round(time.time() - t0, 1)])
            log.flush()
        if step % args.checkpoint_every == 0 and not args.quick:
            torch.save({'model': model.state_dict(), 'opt': opt.state_dict(),
                        'sched': sched.state_dict(), 'step': step}, ckpt)
    log.close()
    final_val = validate()
    meta = {
        'name': f'aslproc-denoiser-{args.arch}-s{args.seed}',
        'command': 'python -m aslproc.training.train_denoiser ' + ' '.join(sys.argv[1:]),
        'arch': args.arch, 'kwargs': kwargs, 'channels': list(channels),
        'normalisation': {'cbf_scale': dnu.CBF_SCALE, 'm0_reference': 'median M0 in mask',
                          'm0_clip': 3.0, 'sigma': 'SD of the mean from the pair spread'},
        'lambda': args.lam, 'steps': args.steps, 'stop_after': args.stop_after,
        'init': str(args.init) if args.init else None, 'heterogeneous': args.heterogeneous,
        'lesion_weight': args.lesion_weight, 'bias_weight': args.bias_weight,
        'seed': args.seed, 'batch': args.batch,
        'patch': args.patch, 'lr': args.lr, 'subjects': args.subjects,
        'resumed_from_step': start or None,
        'seconds_total': round(earlier_s + time.time() - t0, 1),
        'seconds_simulation': round(sim_s, 1),
        'val_loss_initial': first_val, 'val_loss_final': final_val,
        'hardware': f'{platform.processor() or platform.machine()}, '
                    f'{torch.get_num_threads()} torch threads, CPU',
        'torch': torch.__version__,
    }
    infer.save_denoiser(args.out / 'denoiser.pt', model, args.arch, kwargs, channels, meta)
    (args.out / 'metadata.json').write_text(json.dumps(meta, indent=2) + '\n')
    return meta


def main(argv=None) -> int:
    """Command-line entry point; prints the path of the exported weights."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
    meta = train(args)
    print(args.out / 'denoiser.pt', json.dumps({k: meta[k] for k in (
        'val_loss_initial', 'val_loss_final', 'seconds_total')}))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

"""Run torch's thread pool in this process, then a two-node MultiProc workflow through the CLI's
own runner whose nodes use torch again. With forked workers the nodes never return (libgomp's
pool lock is copied held); ``tests/test_cli_runner.py`` runs this under a timeout.

Usage: ``python -m tests.torch_then_multiproc WORKDIR``
"""

import sys
from pathlib import Path
from types import SimpleNamespace


def matmul_sum(n):
    import torch
    a = torch.ones(n, n)
    return float((a @ a).sum())


def main(workdir: str) -> None:
    import torch
    from nipype import Node, Workflow
    from nipype.interfaces.utility import Function

    from aslproc.cli.run import _run_workflow

    torch.set_num_threads(2)
    a = torch.ones(800, 800)
    float((a @ a).sum())
    wf = Workflow('torch_then_multiproc', base_dir=workdir)
    nodes = []
    for i in range(2):
        node = Node(Function(['n'], ['total'], matmul_sum), name=f'matmul{i}')
        node.inputs.n = 800
        nodes.append(node)
    wf.add_nodes(nodes)
    _run_workflow(wf, SimpleNamespace(nprocs=2), Path(workdir) / 'crash')
    print('finished')


if __name__ == '__main__':
    main(sys.argv[1])

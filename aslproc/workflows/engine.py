"""A nipype Workflow that carries a methods paragraph (``__desc__``), as niworkflows does."""

from __future__ import annotations

from nipype.pipeline import engine as pe


class LiterateWorkflow(pe.Workflow):
    """``pe.Workflow`` with ``__desc__`` (methods text written from the parameters used)."""

    def __init__(self, name, base_dir=None):
        super().__init__(name, base_dir)
        self.__desc__ = None

    def visit_desc(self) -> str:
        """Methods text of this workflow and its sub-workflows, in topological order."""
        parts = [self.__desc__] if self.__desc__ else []
        for node in pe.utils.topological_sort(self._graph)[0]:
            if isinstance(node, LiterateWorkflow):
                text = node.visit_desc()
                if text:
                    parts.append(text)
        return '\n\n'.join(p.strip() for p in parts if p)

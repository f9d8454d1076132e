"""Write one derivative (file + JSON sidecar) into the output dataset, atomically."""

from __future__ import annotations

import logging

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from aslproc.utils.sink import write_derivative

logger = logging.getLogger(__name__)


class _DerivativesDataSinkInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc='file to store')
    base_directory = Directory(mandatory=True, desc='root of the derivatives dataset')
    entities = traits.Dict(mandatory=True, desc='entities of the source file (subject, ...)')
    datatype = traits.Enum('perf', 'anat', mandatory=True, desc='BIDS datatype folder')
    suffix = traits.Str(mandatory=True, desc='BIDS suffix (cbf, mask, probseg, ...)')
    extension = traits.Str('.nii.gz', usedefault=True, desc='file extension')
    naming = traits.Dict(desc='extra entities: desc, space, label, from, to, mode')
    meta = traits.Dict(desc='JSON sidecar content (Units, Description, parameters)')
    sources = traits.List(traits.Str, desc='BIDS URIs of the inputs (Sources)')


class _DerivativesDataSinkOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc='the stored derivative')


class DerivativesDataSink(SimpleInterface):
    """Name a derivative from the input entities and store it with its sidecar."""

    input_spec = _DerivativesDataSinkInputSpec
    output_spec = _DerivativesDataSinkOutputSpec
    always_run = True

    def _run_interface(self, runtime):
        i = self.inputs
        self._results['out_file'] = str(write_derivative(
            i.in_file, i.base_directory, i.entities, datatype=i.datatype, suffix=i.suffix,
            extension=i.extension, naming=i.naming or {}, meta=i.meta or {},
            sources=i.sources or []))
        return runtime

"""Helpers for the fine-tuning workbook: the plumbing the notebooks import."""

import logging

OPTIONAL_KERNEL_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"


class _DropOptionalKernelNotice(logging.Filter):
    """Drop bitsandbytes' notice about an optional hub kernel, and nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return OPTIONAL_KERNEL_NOTICE not in record.getMessage()


# bitsandbytes 0.50, on CPUs with AVX512-BF16 only, tries to download an optional faster 4-bit kernel from the
# Hugging Face hub ("kernels-community") and falls back to its own kernel when it cannot. Offline (CI, the course)
# it never can, so that one notice is filtered here by its exact text; every other warning still shows. Import
# helpers before trl/peft/bitsandbytes for the filter to apply.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropOptionalKernelNotice())

"""Helpers for the fine-tuning workbook: the plumbing the notebooks import."""

import logging

OPTIONAL_KERNEL_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"


class _DropOptionalKernelNotice(logging.Filter):
    """Drop bitsandbytes' notice about an optional hub kernel, and nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return OPTIONAL_KERNEL_NOTICE not in record.getMessage()


# bitsandbytes 0.50, on CPUs with AVX512-BF16 only, tries to download an optional faster 4-bit
# kernel from the Hugging Face hub ("kernels-community") and falls back to its own kernel when it
# cannot. Offline (CI, the course) it never can, so that one notice is filtered here by its exact
# text; every other warning still shows. Import helpers before trl/peft/bitsandbytes for the filter
# to apply.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropOptionalKernelNotice())

import warnings  # noqa: E402

# transformers 5.2x renamed `is_gradient_checkpointing` to `is_activation_checkpointing` and warns
# on the old name. Our code uses neither; peft 0.21 (PeftModel.__init__) and trl 1.16 (generation
# and DPO helpers) still read the old one, so the warning would show in every training cell until
# they update. Filtered by its exact text only.
warnings.filterwarnings(
    "ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning
)

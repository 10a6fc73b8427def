"""The training job: checkpoint a fastai fit before the kernel's cutoff and resume it exactly.

``deadline`` (``Deadline``) saves through ``checkpoint`` what ``state`` captures, and ``resume`` puts a fit back at
the saved batch; ``guard`` stops a fit that went wrong (NaN loss), ``weights`` loads pretrained weights offline.
"""

"""Push kernels to Kaggle from your own machine: bundle the package into the script, validate metadata, follow runs.

`bundle` builds one self-contained script (internet-off competitions cannot pip install); `metadata` checks
kernel-metadata.json before any network call; `api` calls the official `kaggle` client; `chain` pushes resume runs.
None of these modules imports torch or fastai.
"""

"""A Kaggle on your machine that runs what you push: the local service the official client talks to on loopback
(``service``, its kernel versions ``versions`` and datasets ``datasets``, the address ``loopback``), and
``rehearse``, which runs a kernel's whole chain against it before any GPU quota is spent.
"""

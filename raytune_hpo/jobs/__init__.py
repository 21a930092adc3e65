"""Stage 6, sweeps as Ray jobs on a cluster: ``client`` submits, follows, stops and lists
them through Ray's Job Submission API (the cluster configs themselves are the repository's
``cluster/`` folder).

May import: every earlier stage and the shared modules; nothing of ``cli``.
"""

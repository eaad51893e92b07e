"""Workers beyond one host: Slurm worker jobs and a scaler that follows the backlog.

``sbatch``   the batch script of a Slurm worker and the Slurm client calls
``backlog``  what is queued and running per queue, and the live workers, read from Redis
``reconcile`` pure: how many workers a queue needs, which idle ones to drain
``backends`` start and drain workers: Slurm jobs, or compose containers
``loop``     the reconcile loop of ``jobset scale``, its log and its Prometheus gauges
``cli``      the ``jobset slurm`` and ``jobset scale`` commands
"""

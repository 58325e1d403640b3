"""What runs behind the door (``dcnn_core.training.engine``): ``local`` trains in threads of this process (the
default); ``ray_engine`` trains in worker processes of a Ray cluster (``ray_worker``), mirrored here (``mirror``)."""

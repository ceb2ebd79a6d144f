"""Reading run folders into tables and plots. Ray-free: works on any run
folder, finished, interrupted or still being written on a cluster."""

"""Day-2 steps: what acts on a running cluster rather than placing a service, on every target.

Each step is a shell script run as root on one host through ``Target.run_step`` (a local command that
runs ``docker exec`` on the docker target, a remote command over SSH on the ssh target). A step runs
when it is created and again whenever its script changes; its script is idempotent. The cluster
component declares the steps between the services they act on (components/cluster.py).
"""

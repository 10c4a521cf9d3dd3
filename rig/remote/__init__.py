"""A rig over several hosts: ``rig worker`` runs roles of the trial on other machines.

The console (``rig run``, the supervisor) binds the control endpoint; on each other host a
``rig worker --config FILE --role ROLE`` (:mod:`rig.remote.agent`) connects to it, announces its
role and, for every trial, starts that role's worker process from the trial's plan, reports its
process id and exit, and passes on the console's abort. The worker process itself talks to the
supervisor and to the other workers exactly as on one host, over the ``tcp://`` endpoints of the
config. See docs/multi-host.md.
"""

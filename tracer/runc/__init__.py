"""What both backends share: from "a runc process started / ended" to container events.

    args.py        parse runc's argv as runc itself does
    binaries.py    find the runc binaries to watch
    files.py       read what runc leaves on disk: config.json, pid files, state.json
    proc.py        every read of /proc
    spec.py        the typed fields taken from a spec, within bounds
    enrich.py      the manager, the Kubernetes fields, the redaction of secrets
    discovery.py   the containers runc runs now (its state directories)
    statewatch.py  knowing as soon as runc writes a state.json
    containers.py  a reported container, and the events that say so
    tracker.py     runc calls in flight, resolved into containers
"""

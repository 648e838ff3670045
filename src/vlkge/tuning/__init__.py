"""``vlkge tune``: hyper-parameter search on Optuna over ordinary run folders (docs/tuning.md).

``space`` reads the search space, ``storage`` opens the study's database, ``study`` holds a
search's settings and its budget of trials, ``recovery`` claims trials and re-queues those whose
worker died, ``worker`` trains trials in a fresh process, ``search`` runs the workers and shows
progress, ``results`` selects the best trial (``best.yaml``, its test split scored once) and
``report`` writes ``report.html``.
"""

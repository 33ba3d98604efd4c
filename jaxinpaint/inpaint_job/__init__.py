"""The inpaint job: the modules that know about a run's input files, its
output folder and its flags: `inputs` (checked, then read a batch at a
time), `outputs` (the layout under OUT, its checks, its lock, run.json),
`writer` (writes each batch's outputs), `processes` (several processes
sharing one input list), `roles` (what this process completes and writes)
and `runner` (executes a planned run)."""

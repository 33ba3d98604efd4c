"""The inpaint job: the modules that know about a run's input files, its
output folder and its flags (`inputs`, `outputs`, `processes`, `runner`)."""

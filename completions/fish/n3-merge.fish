# fish completion for n3-merge
complete -c n3-merge -s r -l rule -x -a 'fedavg fedavgm fedadam fedyogi fedadagrad median trimmed-mean: krum: multi-krum: mix' -d 'Aggregation rule'
complete -c n3-merge -s b -l base -r -F -d 'Apply the aggregate to this model'
complete -c n3-merge -l state -r -F -d 'Server state file'
complete -c n3-merge -s w -l weights -x -a 'samples uniform' -d 'Input weights'
complete -c n3-merge -l self -r -F -d "mix: this node's own model"
complete -c n3-merge -l self-weight -x -d 'mix: weight of --self'
complete -c n3-merge -l clip-norm -x -d 'Clip each update to this L2 norm'
complete -c n3-merge -l max-norm -x -d 'Refuse updates with a larger L2 norm'
complete -c n3-merge -l server-lr -x -d 'Server learning rate'
complete -c n3-merge -l beta1 -x -d 'Momentum or first-moment decay'
complete -c n3-merge -l beta2 -x -d 'Second-moment decay'
complete -c n3-merge -l tau -x -d 'Adaptivity'
complete -c n3-merge -l min-inputs -x -d 'Fewest usable inputs'
complete -c n3-merge -l skip-bad -d 'Drop bad inputs with a warning'
complete -c n3-merge -s j -l threads -x -d 'Threads'
complete -c n3-merge -s o -l output -r -F -d 'Output file'
complete -c n3-merge -s f -l force -d 'Write binary output to a terminal'
complete -c n3-merge -l json -d 'Print a JSON summary on stderr'
complete -c n3-merge -l scores -r -F -d "Write every input's contribution scores"
complete -c n3-merge -l min-score -x -d 'Skip inputs whose score is below [NAME:]T'
complete -c n3-merge -l holdout -r -F -d 'Score updates by the holdout loss they remove'
complete -c n3-merge -l holdout-limit -x -d 'Holdout samples evaluated'
complete -c n3-merge -l receipts -r -F -d 'Append signed receipts to this ledger'
complete -c n3-merge -l key -r -F -d "The merger's member key"
complete -c n3-merge -s q -l quiet -d 'No warnings'
complete -c n3-merge -s v -l verbose -d "Print each input's weight"
complete -c n3-merge -s h -l help -d 'Show help'

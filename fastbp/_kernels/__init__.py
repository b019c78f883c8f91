"""The math of backpropagation, compiled by :func:`fastbp._numba.jit`.

==================  ==========================================================
module              what it holds
==================  ==========================================================
:mod:`.activations` each hidden activation's forward and derivative kernel
:mod:`.losses`      each loss's output activation and output delta kernel
:mod:`.linalg`      the three products of a layer, on flat row-major blocks
:mod:`.backprop`    forward and backward pass of a chunk; a batch's chunks in
                    parallel; prediction
:mod:`.optimizers`  the SGD/Nesterov/Adam step of one entry; schedules
:mod:`.update`      finish a batch's gradient, clip, step, block by block
:mod:`.epoch`       one compiled call per epoch of mini-batch training
:mod:`.full_batch`  loss and gradient over all rows, for L-BFGS and CG
:mod:`.boundary`    what the kernels Python calls check before they run
==================  ==========================================================

Nothing here imports scikit-learn or the estimators; only :mod:`fastbp._network`
(the Python side of the kernels) and the estimators' training loop call in.
"""

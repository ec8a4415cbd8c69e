"""What a default run never uses, each imported only where its parameter turns it on:

    quantization     quantize='int8': post-training static int8 quantization for the CPU
    calibration      quantize='int8': the training images that set the int8 ranges
    corruptions      corruptions=True: accuracy under shift, on corrupted copies of the test images
    compiled_step    compile=True (or 'auto' where verified on a GPU): the step through torch.compile
    sizes            the size/accuracy tables of results/ (scripts/results_tables.py)

The pipeline that a default run executes is the modules of helpers/ above this package.
"""

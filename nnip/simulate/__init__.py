"""The photography-process simulation (numpy + scipy only; nothing here imports torch).

Modules, in the order light meets them:

- :mod:`nnip.simulate.color`    sRGB curves, real camera matrices, illuminants, white balance
- :mod:`nnip.simulate.optics`   diffraction, field-varying aberrations, lateral CA, vignetting
- :mod:`nnip.simulate.sensor`   OLPF, pixel integration, Bayer CFA, Poisson-Gaussian noise of
  real sensors, quantisation
- :mod:`nnip.simulate.patterns` synthetic hard patches (near-Nyquist stripes, edges, lights)
- :mod:`nnip.simulate.resize`   MATLAB-compatible bicubic ``imresize`` (the SR protocol's)
- :mod:`nnip.simulate.pairs`    teachers, upscaling pairs, RAW pairs, ``simulate_dng``
- :mod:`nnip.simulate.make_dng` ``python -m nnip.simulate.make_dng CLEAN OUT.dng ...``

Every random function takes a ``numpy.random.Generator``: the same seed gives the same
result. Nothing is imported here, so ``import nnip.simulate`` stays free.
"""

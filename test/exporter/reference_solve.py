"""The tests' reference fixed point: plain iteration on the user's own PyTorch modules."""


def fixed_point(f, z0, tol, max_iter=5000):
    """Iterates z <- f(z) until the largest change is below `tol`; raises if it never is."""
    z = z0
    for _ in range(max_iter):
        fz = f(z)
        if float((fz - z).abs().max()) < tol:
            return fz
        z = fz
    raise RuntimeError("reference iteration did not converge")

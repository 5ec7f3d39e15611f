"""The only package that touches threads, processes or shared memory."""

"""The vocabulary shared by every part of embmap: specs, the IR module, the plan format and the verifier.

`ir` imports nothing else of the project.
"""

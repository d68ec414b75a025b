"""Training: the compiled step that returns every norm (step), the optimizers' update rules
(optimizers), the clipping methods' declarations (methods, no TensorFlow) and rules (clipping),
and the dirt a run can mix into its data (dirt). Importing the package loads no TensorFlow."""

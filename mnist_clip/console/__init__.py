"""What a person at a terminal or in a notebook meets: progress and summaries (reporting),
Ctrl-C and SIGTERM (interrupts), and TensorFlow's quiet start-up (tf_setup)."""

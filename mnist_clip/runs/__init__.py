"""The run folder, whose files are the contract between training and everything that reads a
run: the folder on disk (folder), its columns (schema), writing it (writer), reading it back
(reader), the words of its settings (labels), a table of several (table), and the diagnosis of
a run that diverged (diagnosis). No TensorFlow here."""

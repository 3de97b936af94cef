"""The model files: the registry of installed models (`registry`), the llama.cpp wrappers that
run them (`embedder`, `reranker`), and the converters that build their GGUFs from Hugging Face
checkpoints and ONNX files (`bertconv`, `rerankconv`, `onnxread`). No daemon state lives here."""

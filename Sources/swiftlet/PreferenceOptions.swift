import ArgumentParser
import Swiftlet

/// The flags `dpo` and `orpo` share beyond TrainingOptions: the model, the preference data and how
/// it is cut and batched.
struct PreferenceOptions: ParsableArguments {
    @Option(help: "Hugging Face model folder (config.json, safetensors, tokenizer.json).") var model: String
    @Option(help: "Preference data: JSONL, JSON or CSV rows of prompt/chosen/rejected (strings, or message lists; without prompt, the common prefix is the prompt).")
    var data: String
    @Option(help: "Evaluation preference data.") var evalData: String?
    @Option(help: "Prompt+completion is cut to this many tokens (TRL's max_length); pairs whose prompt alone fills it are dropped.")
    var maxLength = 1024
    @Option(help: "Folder with tokenizer.json (default: the model folder).") var tokenizer: String?
    @Option(help: "Chat template: a built-in name (\(ChatTemplate.builtInNames.joined(separator: ", "))) or a .jinja file; default: the tokenizer's own.")
    var chatTemplate: String?
    @Option(help: "Epochs over the pairs, when --max-steps is not given.") var numTrainEpochs: Double = 1
    @Option(help: "Preference pairs per micro-batch (each is two sequences).") var batchSize = 8
    @Option(help: "constant, constant_with_warmup, linear or cosine.") var scheduler: LRScheduler = .linear

    func validate() throws {
        if maxLength <= 0 || batchSize <= 0 { throw ValidationError("--max-length and --batch-size must be positive") }
    }
}

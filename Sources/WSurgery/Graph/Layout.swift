/// The axis convention of a tensor's values, which decides where the input-channel axis of a kernel is.
public enum Layout: String, Sendable, Codable {
    /// Keras: conv kernels (kh, kw, in, out), Dense kernels (in, out).
    case keras
    /// PyTorch: conv weights (out, in, kh, kw), Linear weights (out, in).
    case torch
    /// Not known (biases, statistics, or names that say nothing).
    case unknown
}

/// What kind of layer owns a group of tensors.
public enum LayerKind: String, Sendable, Codable, CaseIterable {
    case input
    case conv1d
    case conv2d
    case conv3d
    case depthwiseConv2d = "depthwise_conv2d"
    case separableConv2d = "separable_conv2d"
    case conv2dTranspose = "conv2d_transpose"
    case dense
    case batchNorm = "batch_norm"
    case layerNorm = "layer_norm"
    case groupNorm = "group_norm"
    case embedding
    /// A recurrent layer (LSTM, GRU, a simple RNN, a bidirectional wrapper).
    case recurrent
    /// Attention with its own projections (Keras `MultiHeadAttention`, PyTorch `nn.MultiheadAttention`).
    case attention
    case pooling
    case flatten
    /// An activation (`ReLU`, `Activation`, `Softmax`, ...).
    case activation
    /// Reshaping, padding, cropping, dropout, upsampling: no weights, one input, shapes only.
    case shape
    /// Add, Concatenate, Multiply and the other layers that merge several inputs: no weights.
    case merge
    case model
    case unknown

    /// The kind for a Keras layer class name.
    public init(kerasClassName name: String) {
        switch name {
        case "InputLayer": self = .input
        case "Conv1D", "Convolution1D": self = .conv1d
        case "Conv2D", "Convolution2D": self = .conv2d
        case "Conv3D", "Convolution3D": self = .conv3d
        case "DepthwiseConv2D": self = .depthwiseConv2d
        case "SeparableConv2D", "SeparableConvolution2D": self = .separableConv2d
        case "Conv2DTranspose", "Convolution2DTranspose": self = .conv2dTranspose
        case "Dense": self = .dense
        case "BatchNormalization", "SyncBatchNormalization": self = .batchNorm
        case "LayerNormalization": self = .layerNorm
        case "GroupNormalization": self = .groupNorm
        case "Embedding": self = .embedding
        case "LSTM", "GRU", "SimpleRNN", "Bidirectional", "RNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "CuDNNLSTM", "CuDNNGRU", "LSTMCell",
            "GRUCell", "SimpleRNNCell":
            self = .recurrent
        case "MultiHeadAttention", "GroupQueryAttention", "GroupedQueryAttention", "Attention", "AdditiveAttention": self = .attention
        case "Flatten": self = .flatten
        case "Functional", "Sequential", "Model": self = .model
        case "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "ThresholdedReLU": self = .activation
        case "Reshape", "Permute", "RepeatVector", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D",
            "Cropping3D", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
            "UpSampling1D", "UpSampling2D", "UpSampling3D", "Identity":
            self = .shape
        case "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot": self = .merge
        default:
            self = name.hasSuffix("Pooling1D") || name.hasSuffix("Pooling2D") || name.hasSuffix("Pooling3D") ? .pooling : .unknown
        }
    }
}

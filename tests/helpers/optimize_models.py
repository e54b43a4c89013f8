"""Source of the tiny PyTorch reference models (a factory module), shared by the optimize tests."""

import textwrap

FACTORY_MODULE = "mlserve_optimize_test_models"

MODELS_SOURCE = textwrap.dedent(
    '''
    import torch
    from torch import nn


    def mlp():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5))
        return net.eval(), (torch.randn(1, 32),)


    class TinyCNN(nn.Module):
        def __init__(self):
            super().__init__()
            layers, channels = [], 3
            for out in (8, 16, 16):
                layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
                channels = out
            self.features = nn.Sequential(*layers)
            self.head = nn.Linear(16, 4)

        def forward(self, image):
            return self.head(self.features(image).mean(dim=(2, 3)))


    def cnn():
        torch.manual_seed(0)
        net = TinyCNN()
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):  # non-trivial statistics so folding BN matters
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        return net.eval(), (torch.randn(1, 3, 16, 16),)


    class TinyEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
            self.head = nn.Linear(16, 3)

        def forward(self, tokens):
            return self.head(self.encoder(tokens).mean(dim=1))


    def encoder():
        torch.manual_seed(0)
        return TinyEncoder().eval(), (torch.randn(1, 8, 16),)


    class Branchy(nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent branch: torch.export refuses it, tracing bakes in one side
                return x * 2
            return x - 1


    def branchy():
        return Branchy(), (torch.randn(1, 4),)


    def not_a_model():
        return 42


    def raises():
        raise RuntimeError("weights file missing")


    class BatchOfOne(nn.Module):
        """Computes something else at batch 1; the dynamo exporter keeps only the batch > 1 branch."""

        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(8, 3)

        def forward(self, x):
            h = self.linear(x)
            if h.shape[0] == 1:
                return h * 0.0
            return h


    def batch_of_one():
        torch.manual_seed(0)
        return BatchOfOne().eval(), (torch.randn(2, 8),)
    '''
)



"""Training operators: PyTorchJob, TFJob, XGBoostJob, JAXJob, PaddleJob, MPIJob and Trainer v2 TrainJob."""
